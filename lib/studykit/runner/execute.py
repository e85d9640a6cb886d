"""Runs a study: one new run directory, each stage's notebook executed by papermill, run.json kept current.

Exit codes: 0 all stages passed, 1 a stage failed, 2 bad params or usage (nothing created).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

from studykit import KIT_ROOT
from studykit.evidence.journal import parse_utc, read_commands, utc_now
from studykit.params import Study, dump_study, load_study, study_hash
from studykit.stages import STAGE_ORDER
from studykit.evidence.redact import export_study_secrets, redact_file
from studykit.evidence.rundir import RunLayout, new_run_dir, outputs_root, read_json, utc_stamp, write_json, write_text
from studykit.engine.server import reap_leftovers
from studykit.engine.shared import STAGES_ENV, load_registry, stop_finished
from studykit.runner.sharing import execution_order

NOTEBOOKS = KIT_ROOT / "notebooks"
KERNEL_NAME = "studykit"
# papermill gives a kernel 60 s to start; on a 2-core host busy with a vLLM engine it can take longer (seen on
# CI), and a stage failed for that measures nothing about the model
KERNEL_START_TIMEOUT_S = 600
# The report is derived from the other stages: it runs whatever happened before it (--fail-fast included),
# and a resume that re-runs any stage rebuilds it.
DERIVED_STAGES = ("report",)


def notebooks_dir() -> Path:
    # STUDYKIT_NOTEBOOKS lets the runner's own tests drive it with stub notebooks instead of real vLLM stages.
    return Path(os.environ.get("STUDYKIT_NOTEBOOKS") or NOTEBOOKS)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def vllm_seconds(run_dir: Path, stage: str, window: tuple[str, str] | None = None) -> float:
    """Time covered by vllm commands during the stage. A union, not a sum: bench serve runs inside a server's
    lifetime, and counting both would put the kit's overhead below zero. With the stage's (start, end) window,
    a shared server counts in every stage it was up for, clipped to that stage."""
    spans = [(r, parse_utc(r["started_utc"]).timestamp(), parse_utc(r["ended_utc"]).timestamp())
             for r in read_commands(run_dir) if r.get("is_vllm") and r.get("started_utc") and r.get("ended_utc")]
    if window is None:
        intervals = [(a, b) for r, a, b in spans if r.get("stage") == stage]
    else:
        lo, hi = (parse_utc(stamp).timestamp() for stamp in window)
        intervals = [(max(lo, a), min(hi, b)) for r, a, b in spans
                     if r.get("stage") == stage or r.get("extra", {}).get("shared_by")]
        # a shared server still up is journaled only when the runner stops it: count it from the registry
        intervals += [(max(lo, parse_utc(e["started_utc"]).timestamp()), hi) for e in load_registry(run_dir).values()
                      if not e.get("stopped_utc") and e.get("started_utc")]
        intervals = [(a, b) for a, b in intervals if b > a]
    return round(union_seconds(intervals), 3)


def stage_error(run_dir: Path, stage: str, exc: BaseException | None) -> str | None:
    result_path = RunLayout(run_dir).result(stage)
    if result_path.exists():
        try:
            res = read_json(result_path)
            if res.get("status") == "failed":
                return res.get("error") or "; ".join(res.get("failures", [])) or "stage reported failure"
        except ValueError:
            return f"{result_path} is not valid JSON"
    if exc is not None:
        # papermill's PapermillExecutionError carries the cell's exception name and value.
        ename = getattr(exc, "ename", type(exc).__name__)
        evalue = getattr(exc, "evalue", str(exc))
        return f"{ename}: {evalue}"
    if not result_path.exists():
        return f"the notebook finished without writing {result_path.name}"
    return None


def kernel_config():
    """The stage kernels talk to papermill over IPC (Unix sockets, readable by this user only), not TCP on
    localhost: the kernel and the runner are always on one machine, and over TCP ipykernel 7 warns on every start
    that the traffic is unencrypted, a warning a reader of the run cannot act on.

    jupyter_client names the sockets "<ip>-<n>" with the first n no file has yet, and without a connection file
    its ip is the relative "kernel-ipc": two studies started in one working directory at once then picked the same
    sockets (seen on CI: "Invalid Signature", and a kernel start that hung). Each kernel gets a prefix of its own
    in Jupyter's runtime directory."""
    import uuid

    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Config({"KernelManager": {"transport": "ipc", "ip": str(runtime / f"studykit-{uuid.uuid4().hex[:12]}")}})


def execute_stage(stage: str, run_dir: Path, study: Study, log=print, verbose: bool = False) -> dict:
    """Run the stage's notebook. verbose: papermill's own progress bar and the cells' output, instead of the
    one line per step studykit.runner.progress prints."""
    import papermill as pm

    from studykit.runner.progress import StageProgress

    layout = RunLayout(run_dir)
    started = utc_now()
    t0 = time.monotonic()
    params = {"run_dir": str(run_dir), "params_path": str(layout.params), **study.stage_params(stage)}
    exc: BaseException | None = None
    nb_dir = notebooks_dir()
    if verbose:
        _papermill_logging()
    try:
        with StageProgress(run_dir, stage, enabled=not verbose):
            pm.execute_notebook(str(nb_dir / f"{stage}.ipynb"), str(layout.notebooks / f"{stage}.ipynb"),
                                parameters=params, kernel_name=KERNEL_NAME, cwd=str(nb_dir),
                                progress_bar=verbose, log_output=verbose, config=kernel_config(),
                                start_timeout=KERNEL_START_TIMEOUT_S)
    except Exception as err:  # noqa: BLE001 - any failure of a stage is recorded, not fatal to the run
        exc = err
    finally:
        # a shared server outlives the stage that started it; the runner stops it after its last user
        live = [e for e in load_registry(run_dir).values() if not e.get("stopped_utc")]
        reap_leftovers(layout.pids, keep={e["pid"] for e in live})
        _redact_stage_files(layout, stage, skip={Path(e["log"]) for e in live})
    error = stage_error(run_dir, stage, exc)
    ended = utc_now()
    rec = {"status": "failed" if error else "passed", "started_utc": started, "ended_utc": ended,
           "wall_seconds": round(time.monotonic() - t0, 3),
           "vllm_seconds": vllm_seconds(run_dir, stage, (started, ended)),
           "error": error, "notebook": f"notebooks/{stage}.ipynb",
           "results": f"results/{stage}.json" if layout.result(stage).exists() else None}
    # Also after a failure: the failed notebook is the one a reader most needs to see.
    from studykit.report.notebook_html import render_stage

    rec.update(render_stage(run_dir, stage))
    if rec.get("notebook_html_error"):
        log(f"      notebook HTML not written: {rec['notebook_html_error'][:300]}")
    return rec


def _papermill_logging() -> None:
    # papermill writes the cells' output through its logger at INFO; without a handler nothing would show
    import logging

    logger = logging.getLogger("papermill")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _redact_stage_files(layout: RunLayout, stage: str, skip: set[Path] = frozenset()) -> None:
    """Mask secrets in what the kit did not write itself: the executed notebook (papermill), server and
    bench logs and raw outputs (vLLM). A shared server still writing its log is swept when it stops."""
    files = [layout.notebooks / f"{stage}.ipynb", *layout.logs.glob(f"{stage}-*.log")]
    if (layout.raw / stage).is_dir():
        files += [p for p in (layout.raw / stage).rglob("*") if p.is_file()]
    for path in files:
        if path not in skip:
            redact_file(path)


def run_study(params_path: str | Path, stages: list[str] | None = None, *, fail_fast: bool = False,
              resume: str | Path | None = None, log=print, verbose: bool = False) -> tuple[int, Path | None]:
    """Run (or resume) one study. Returns (exit code, run directory).

    verbose: papermill's progress bar and the notebooks' output instead of one line per step (`--verbose`).

    Resume keeps every stage that passed (its files and run.json record untouched) and re-runs the ones that
    are missing, failed or were interrupted; the report is rebuilt whenever anything was re-run.
    """
    from studykit.evidence.environment import capture_environment

    if resume:
        run_dir = Path(resume)
        layout = RunLayout(run_dir)
        if not layout.params.exists():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no params.yaml)")
        study = load_study(layout.params)
        state = read_json(layout.run_json) if layout.run_json.exists() else {"stages": {}}
        state.setdefault("stages", {})
    else:
        study = load_study(params_path)  # raises ParamsError before anything is created
    # Before anything is written: the writers mask the secret values they find in this environment.
    export_study_secrets(study.server.env)
    if not resume:
        run_dir = new_run_dir(study)
        layout = RunLayout(run_dir)
        write_text(layout.params, dump_study(study))
        state = {"study": study.name, "params_source": str(Path(params_path).resolve()),
                 "params_sha256": study_hash(study), "run_dir": str(run_dir), "started_utc": utc_now(),
                 "stages": {}}
    before = (state.get("requested_stages") or []) if resume else []
    # A resume without --stages finishes what the interrupted run was asked for (a `--stages` subset stays one).
    wanted = [s for s in STAGE_ORDER if s in (stages or before or study.stages)]
    order = _execution_order(study, wanted)
    if resume:
        # A resume with --stages adds to what the run covers; it does not forget stages run earlier.
        state["requested_stages"] = [s for s in STAGE_ORDER if s in before or s in wanted]
        state.setdefault("resumes", []).append({"utc": utc_now(), "stages": wanted})
    else:
        state["requested_stages"] = wanted
    log(f"studykit: study {study.name}, run directory {run_dir}")

    interrupts = _Interrupts()
    os.environ[STAGES_ENV] = json.dumps(order)  # the stage kernels inherit it: which servers they share
    if order != wanted:
        log(f"  execution order (shared servers run back to back): {', '.join(order)}")
    try:
        env = capture_environment(study, params_path=layout.params)
        env_path = layout.result("environment")
        if resume and env_path.exists():
            # The first capture describes the stages kept; the resumed stages' machine is recorded beside it.
            env_path = env_path.with_name(f"environment.resume-{utc_stamp()}.json")
        write_json(env_path, env)
        _measure_idle_power(layout, study, resume=bool(resume), log=log)
        stopped = False
        reran = False
        for i, stage in enumerate(order):
            done = state["stages"].get(stage, {})
            derived = stage in DERIVED_STAGES
            if resume and done.get("status") == "passed" and not (derived and reran):
                log(f"  {stage:<11} kept (passed in an earlier attempt)")
                continue
            if stopped and not derived:
                continue
            if resume and stage in state["stages"] and not derived:
                _archive_attempt(layout, stage, state["stages"][stage])
            log(f"  {stage:<11} running")
            state["stages"][stage] = {"status": "running", "started_utc": utc_now()}
            write_json(layout.run_json, state)
            rec = execute_stage(stage, run_dir, study, log=log, verbose=verbose)
            stop_finished(run_dir, remaining=order[i + 1:], log=log)
            interrupts.raise_if_seen()
            reran = True
            state["stages"][stage] = rec
            write_json(layout.run_json, state)
            log(f"  {stage:<11} {rec['status']} in {rec['wall_seconds']:.1f} s "
                f"(inside vllm commands: {rec['vllm_seconds']:.1f} s)")
            if rec["error"]:
                log(f"      error: {rec['error'].splitlines()[0][:300]}")
            if rec["status"] == "failed" and fail_fast and not stopped:
                log("  --fail-fast: later stages skipped (the report is still written)")
                stopped = True
    except KeyboardInterrupt:
        for name, rec in state["stages"].items():
            if rec.get("status") == "running":
                rec.update(status="interrupted", ended_utc=utc_now(), error="interrupted (SIGINT/SIGTERM)")
        state["ended_utc"] = utc_now()
        state["status"] = "interrupted"
        write_json(layout.run_json, state)
        log(f"\nstudykit: interrupted; partial results kept in {run_dir}")
        log(f"resume with: studykit run --resume {run_dir}")
        return 130, run_dir
    finally:
        stop_finished(run_dir, remaining=[], log=log)
        reap_leftovers(layout.pids)
        interrupts.restore()
        os.environ.pop(STAGES_ENV, None)
    state["ended_utc"] = utc_now()
    failed = [s for s in state["requested_stages"] if state["stages"].get(s, {}).get("status") != "passed"]
    state["status"] = "failed" if failed else "passed"
    write_json(layout.run_json, state)
    log(f"studykit: {'all stages passed' if not failed else 'failed: ' + ', '.join(failed)}")
    log(f"run directory: {run_dir}")
    report = run_dir / "report.html"
    if report.exists() and state["stages"].get("report", {}).get("status") == "passed":
        log(f"report: {report}")  # last line: what `make study` leaves on screen
    return (1 if failed else 0), run_dir


def _measure_idle_power(layout: RunLayout, study: Study, *, resume: bool, log=print) -> None:
    """Once per invocation, before any engine starts (the stages read it through StageContext.idle_power): the
    power the host draws idle, which a stage's dynamic energy leaves out. A resume measures again beside the first
    (the machine the resumed stages run on), as it captures the environment again."""
    from studykit.energy import idle_power

    path = layout.results / "idle_power.json"
    if resume and path.exists():
        path = path.with_name(f"idle_power.resume-{utc_stamp()}.json")
    idle = idle_power(study.platform)
    write_json(path, idle)
    if "idle_power_w" in idle:
        log(f"  idle power before any engine: {idle['idle_power_w']:.1f} W")
    else:
        log(f"  idle power not measured: {idle['idle_not_run']}")


def _execution_order(study: Study, wanted: list[str]) -> list[str]:
    from studykit.weights.store import checkpoint

    return execution_order(study, wanted, checkpoint(study).model_dir)


class _Interrupts:
    """SIGINT and SIGTERM unwind like Ctrl-C, so servers are stopped and run.json is written.

    Our own handler, not Python's default: asyncio (under papermill) replaces only the default SIGINT handler
    with one that cancels its task, and a cancellation can be absorbed inside the notebook client, letting the
    stage run on as if nothing happened. The flag makes the runner stop after the stage even then."""

    def __init__(self):
        self.seen = False
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self.previous:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def raise_if_seen(self):
        if self.seen:
            raise KeyboardInterrupt

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def report_only(run_dir: str | Path, reference: str | None = None, log=print) -> tuple[int, Path]:
    """`studykit report RUN_DIR`: rebuild the report of an existing run (the report notebook, via papermill)."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    if not layout.params.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no params.yaml)")
    study = load_study(layout.params)
    if reference is not None:
        study = study.model_copy(update={"report": study.report.model_copy(update={"reference": reference})})
    state = read_json(layout.run_json) if layout.run_json.exists() else {"stages": {}}
    state.setdefault("stages", {})
    log(f"studykit: report of {run_dir}")
    from studykit.report.notebook_html import RECORD_FIELDS, executed_stages, render_run

    # The report stage renders its own notebook when it ends; the others are rebuilt here, before it links them.
    rendered = render_run(run_dir, [s for s in executed_stages(run_dir) if s != "report"])
    for stage, fields in rendered.items():
        if stage in state["stages"]:
            for stale in RECORD_FIELDS:
                state["stages"][stage].pop(stale, None)
            state["stages"][stage].update(fields)
        if fields.get("notebook_html_error"):
            log(f"  {stage:<11} notebook HTML not written: {fields['notebook_html_error'][:300]}")
    state["stages"]["report"] = {"status": "running", "started_utc": utc_now()}
    write_json(layout.run_json, state)
    try:
        rec = execute_stage("report", run_dir, study, log=log)
    except KeyboardInterrupt:
        state["stages"]["report"].update(status="interrupted", ended_utc=utc_now(),
                                         error="interrupted (SIGINT/SIGTERM)")
        write_json(layout.run_json, state)
        return 130, run_dir
    state["stages"]["report"] = rec
    requested = state.get("requested_stages") or []
    if "report" not in requested:
        state["requested_stages"] = [s for s in STAGE_ORDER if s in requested or s == "report"]
    failed = [s for s in state["requested_stages"] if state["stages"].get(s, {}).get("status") != "passed"]
    state["status"] = "failed" if failed else "passed"
    write_json(layout.run_json, state)
    log(f"  report      {rec['status']} in {rec['wall_seconds']:.1f} s")
    if rec["error"]:
        log(f"      error: {rec['error'].splitlines()[0][:300]}")
    if (run_dir / "report.html").exists():
        log(f"report: {run_dir / 'report.html'}")
    return (0 if rec["status"] == "passed" else 1), run_dir


def run_matrix(params_paths: list[str], stages: list[str] | None = None, *, fail_fast: bool = False,
               log=print) -> tuple[int, list[Path], Path | None]:
    """Run each study in turn, then write one comparison report across them into outputs/matrix-<UTC time>/."""
    from studykit.params import load_study as _load

    for p in params_paths:  # every file is checked before the first study starts
        _load(p)
    code, run_dirs = 0, []
    for p in params_paths:
        rc, run_dir = run_study(p, stages=stages, fail_fast=fail_fast, log=log)
        code = max(code, rc)
        if rc == 130:
            return code, run_dirs, None
        if run_dir is not None:
            run_dirs.append(run_dir)
    from studykit.report.matrix import write_comparison

    out = outputs_root() / f"matrix-{utc_stamp()}"
    paths = write_comparison(run_dirs, out)
    log(f"comparison across {len(run_dirs)} runs: {paths['comparison.html']}")
    return code, run_dirs, out


def _archive_attempt(layout: RunLayout, stage: str, record: dict | None = None) -> Path | None:
    """Move a failed attempt's files into `attempts/<stage>-<UTC>/` so the new attempt cannot overwrite them.

    Everything the attempt wrote goes together (results, notebook, raw/<stage>/, logs/<stage>-*.log,
    charts/<stage>-*.png), and the archived results JSON is rewritten to point at the archived copies, so the
    attempt stays readable on its own. `record` is the attempt's run.json entry, kept beside them."""
    moves = {layout.result(stage): Path("results") / f"{stage}.json",
             layout.notebooks / f"{stage}.ipynb": Path("notebooks") / f"{stage}.ipynb",
             layout.raw / stage: Path("raw")}
    moves.update({p: Path("logs") / p.name for p in layout.logs.glob(f"{stage}-*.log")})
    moves.update({p: Path("charts") / p.name for p in layout.charts.glob(f"{stage}-*.png")})
    moves = {src: dst for src, dst in moves.items() if src.exists()}
    if not moves and not record:
        return None
    folder = _new_attempt_folder(layout, stage)
    renamed: dict[str, str] = {}
    for src, dst in moves.items():
        target = folder / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        src.rename(target)
        renamed[str(src)] = str(target)
        renamed[str(src.relative_to(layout.root))] = str(target.relative_to(layout.root))
    archived_result = folder / "results" / f"{stage}.json"
    if archived_result.exists():
        try:
            doc = read_json(archived_result)
        except ValueError:
            pass  # a result cut short by the kill that ended the attempt: kept as it is
        else:
            write_json(archived_result, _repoint(doc, renamed))
    if record:
        write_json(folder / "run-record.json", _repoint(record, renamed))
    return folder


def _new_attempt_folder(layout: RunLayout, stage: str) -> Path:
    base = layout.root / "attempts"
    stamp = utc_stamp()
    for n in range(1, 1000):
        folder = base / (f"{stage}-{stamp}" if n == 1 else f"{stage}-{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder
    raise RuntimeError(f"could not make a new attempt folder under {base}")


def _repoint(value, renamed: dict[str, str]):
    """Every path string that named a moved file or folder (absolute or run-relative) names its archived copy."""
    if not renamed:
        return value
    # One pass, longest first: an absolute path is replaced whole, never again through its relative tail.
    pattern = re.compile("|".join(re.escape(old) for old in sorted(renamed, key=len, reverse=True)))
    def walk(v):
        if isinstance(v, str):
            return pattern.sub(lambda m: renamed[m.group(0)], v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    return walk(value)
