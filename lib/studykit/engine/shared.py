"""One `vllm serve` per distinct serve command in a run.

Stages whose planned server commands are identical but for the port (deploy's real-weight gate, serve, accuracy,
tasks in the default study) share one server: the first stage that needs it starts it (and measures its start,
as it would its own), the following ones attach to it, and the runner stops it after the last one. The runner
also runs the sharing stages back to back (deploy, then the others that share its server, then the rest in the
seed's order), so no offline bench runs beside an idle server. `server.share: false` gives every stage its own.

The kernel that starts a shared server exits with its stage, so the server is started without the launcher's
die-with-parent request; its pid file under pids/ still lets the runner reap it on any exit, and the registry
(run_dir/shared-servers.json) tells the next stage where it listens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from studykit.evidence.journal import CommandLog, CommandRecord, group_alive, parse_utc, utc_now
from studykit.evidence.redact import redact_file
from studykit.evidence.rundir import RunLayout, read_json, write_json

REGISTRY = "shared-servers.json"
STAGES_ENV = "STUDYKIT_RUN_STAGES"  # set by the runner: the run's stages in execution order


def server_key(argv: list[str]) -> str:
    """The serve command without its port: two stages with the same key can use one server."""
    out, skip = [], False
    for a in argv[1:]:  # argv[0] is the interpreter path, not part of the command
        if skip:
            skip = False
            continue
        if a == "--port":
            skip = True
            continue
        out.append(a)
    return json.dumps(out)


def registry_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / REGISTRY


def load_registry(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    path = registry_path(run_dir)
    return read_json(path) if path.is_file() else {}


def register(run_dir: str | Path, key: str, entry: dict[str, Any]) -> None:
    reg = load_registry(run_dir)
    old = reg.get(key)
    if old is not None:
        # a server that died before its last user: kept under another key, so the runner still journals it
        reg[f"{key}#{old['pid']}"] = old
    reg[key] = entry
    write_json(registry_path(run_dir), reg)


def run_stages() -> list[str] | None:
    raw = os.environ.get(STAGES_ENV)
    return json.loads(raw) if raw else None


class AttachedServer:
    """A shared server another stage started: the same face as VllmServer, but entering and leaving it
    neither starts nor stops anything."""

    def __init__(self, entry: dict[str, Any]):
        self.entry = entry
        self.label = f"{entry['stage']}/{entry['label']}"
        self.host, self.port = entry["host"], entry["port"]
        self.ready_seconds = None  # this stage did not wait for it; the start is the first user's
        self.log_path = Path(entry["log"])
        self.command = entry["command"]
        self.proc = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return group_alive(self.entry["pid"])

    def check_alive(self) -> None:
        if not self.alive():
            from studykit.engine.server import ServerError, log_tail

            raise ServerError(f"shared vllm serve {self.label} died.\nlast lines of {self.log_path}:\n"
                              f"{log_tail(self.log_path)}")

    def __enter__(self) -> "AttachedServer":
        self.check_alive()
        return self

    def __exit__(self, *exc) -> None:
        return None


def stop_finished(run_dir: str | Path, remaining: list[str], log=print) -> list[str]:
    """Stop every shared server no remaining stage uses; journal each once. Returns the labels stopped."""
    from studykit.engine.server import stop_group

    reg = load_registry(run_dir)
    stopped = []
    for key, entry in reg.items():
        if entry.get("stopped_utc") or any(s in remaining for s in entry["users"]):
            continue
        entry["stop_signal_utc"] = utc_now()  # lines the server logs after this are its shutdown, not errors
        how = stop_group(entry["pid"]) if group_alive(entry["pid"]) else "already exited"
        entry["stopped_utc"] = utc_now()
        entry["stop"] = how
        started = entry["started_utc"]
        seconds = round((parse_utc(entry["stopped_utc"]) - parse_utc(started)).total_seconds(), 3)
        CommandLog(run_dir, entry["stage"]).append(CommandRecord(
            stage=entry["stage"], label=entry["label"], argv=entry["argv"], command=entry["command"],
            env=entry["env"], started_utc=started, ended_utc=entry["stopped_utc"], seconds=seconds,
            returncode=None, is_vllm=True, log=entry["log"],
            extra={"ready_seconds": entry.get("ready_seconds"), "port": entry["port"], "shared_by": entry["users"],
                   "stop_signal_utc": entry["stop_signal_utc"], "stopped_by": how}))
        (RunLayout(run_dir).pids / f"{entry['pid']}.pid").unlink(missing_ok=True)
        redact_file(Path(entry["log"]))  # the stage sweeps skipped it while the server was writing it
        stopped.append(entry["label"])
        log(f"  shared server {entry['stage']}/{entry['label']} stopped ({how}); used by {', '.join(entry['users'])}")
    if stopped:
        write_json(registry_path(run_dir), reg)
    return stopped
