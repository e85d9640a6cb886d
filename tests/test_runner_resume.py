"""The runner's bookkeeping, driven through the real CLI and papermill with stub stage notebooks (no vLLM):
resume after a kill re-runs only what did not pass, a failure does not stop later stages unless --fail-fast,
and the (real) report notebook runs even when stages failed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, run_cli, tiny_study
from studykit.evidence.rundir import read_json

STUB = '''
import os, time
from pathlib import Path
from studykit.runner.context import open_stage
ctx = open_stage({stage!r}, run_dir, params_path)
with open(Path(run_dir) / "executions.log", "a") as fh:
    fh.write({stage!r} + "\\n")
mode = os.environ.get("STUB_" + {stage!r}.upper(), "pass")
if mode == "hang":
    (Path(run_dir) / {stage!r}).with_suffix(".started").touch()
    release = Path(os.environ["STUB_RELEASE"])
    while not release.exists():  # the test kills the runner meanwhile; the file lets an orphan go
        time.sleep(0.1)
    os._exit(0)  # an orphaned kernel must not finish the stage behind the test's back
attempt = str(len((Path(run_dir) / "executions.log").read_text().split()))
raw_file = Path(run_dir) / "raw" / {stage!r} / "bench.json"
raw_file.parent.mkdir(parents=True, exist_ok=True)
raw_file.write_text(attempt)
log_file = Path(run_dir) / "logs" / ({stage!r} + "-serve.log")
log_file.write_text("attempt " + attempt)
chart_file = Path(run_dir) / "charts" / ({stage!r} + "-bars.png")
chart_file.write_text("attempt " + attempt)
files = {{"raw_json": str(raw_file), "raw_dir_relative": "raw/" + {stage!r}, "server_log": str(log_file),
          "charts": [str(chart_file)], "note": "see logs/" + {stage!r} + "-serve.log"}}
# a number the stage's results model defines (latency: vLLM's avg_latency), and the file paths under params
number = {{"avg_latency": 12.5}} if {stage!r} == "latency" else {{}}
if mode == "fail":
    ctx.write_results({{**number, "params": files, "charts": files["charts"]}},
                      failures=["stub failure for " + {stage!r}])
if mode == "raise":
    raise RuntimeError("stub exception in " + {stage!r})
if mode == "leave":
    # A process group whose owner forgets it, recorded the way VllmServer records a server.
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = Path(run_dir) / "pids"
    pids.mkdir(exist_ok=True)
    (pids / f"{{child.pid}}.pid").write_text(f"{{child.pid}}\\nstub leftover\\n")
    (Path(run_dir) / "leftover.pid").write_text(str(child.pid))
ctx.write_results({{**{{k: 1.25 for k in number}}, "params": files, "charts": files["charts"],
                   "checks": [{{"id": {stage!r} + ".stub", "name": "stub check", "status": "passed", "detail": "ok"}}]}})
'''

MEASURING = ["deploy", "latency", "throughput", "serve", "accuracy", "functional"]


@pytest.fixture
def stub_notebooks(tmp_path) -> Path:
    d = tmp_path / "stub-notebooks"
    d.mkdir()
    for stage in MEASURING:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "studykit", "display_name": "Python (studykit)", "language": "python"}
        params = nbformat.v4.new_code_cell('run_dir = ""\nparams_path = ""')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(STUB.format(stage=stage))]
        nbformat.write(nb, d / f"{stage}.ipynb")
    shutil.copy(ROOT / "notebooks" / "report.ipynb", d / "report.ipynb")  # the real report
    return d


def _env(tmp_path, stub_notebooks, **stub) -> dict:
    env = {**os.environ, "STUDYKIT_OUTPUTS": str(tmp_path / "o"), "STUDYKIT_NOTEBOOKS": str(stub_notebooks),
           "STUB_RELEASE": str(tmp_path / "release")}
    env.update({f"STUB_{k.upper()}": v for k, v in stub.items()})
    return env


def _runner(args, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "studykit.runner.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"runner ended before {path.name} appeared:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def _executions(run_dir: Path) -> list[str]:
    return (run_dir / "executions.log").read_text().split()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_resume_after_kill_reruns_only_unfinished_stages(tmp_path, stub_notebooks, sig):
    params = tiny_study(tmp_path, {"stages": ["deploy", "latency", "throughput", "report"]})
    env = _env(tmp_path, stub_notebooks, latency="hang")
    proc = _runner(["run", str(params)], env)
    try:
        run_dir = None
        deadline = time.monotonic() + 120
        while run_dir is None:
            found = list((tmp_path / "o").glob("*/*/latency.started"))
            run_dir = found[0].parent if found else None
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        (tmp_path / "release").touch()
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, out
        assert f"studykit run --resume {run_dir}" in out
    state = read_json(run_dir / "run.json")
    assert state["stages"]["deploy"]["status"] == "passed"
    assert state["stages"]["latency"]["status"] == ("interrupted" if sig == signal.SIGTERM else "running")
    assert "throughput" not in state["stages"]
    deploy_record = dict(state["stages"]["deploy"])
    deploy_json = run_dir / "results" / "deploy.json"
    deploy_mtime, deploy_text = deploy_json.stat().st_mtime_ns, deploy_json.read_text()
    assert _executions(run_dir) == ["deploy", "latency"]

    # after Ctrl-C a user types the run directory relative to where they are (run_cli runs in ROOT): the kit
    # resolves it there before the stage kernels (working in notebooks/) see it
    typed = os.path.relpath(run_dir, ROOT) if sig == signal.SIGTERM else str(run_dir)
    result = run_cli("run", "--resume", typed, env=_env(tmp_path, stub_notebooks))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy      kept" in result.stdout
    state = read_json(run_dir / "run.json")
    assert state["stages"]["deploy"] == deploy_record  # same timestamps: not re-run
    assert deploy_json.stat().st_mtime_ns == deploy_mtime and deploy_json.read_text() == deploy_text
    assert _executions(run_dir) == ["deploy", "latency", "latency", "throughput"]
    for stage in ("latency", "throughput", "report"):
        assert state["stages"][stage]["status"] == "passed", state["stages"][stage]
    assert state["stages"]["latency"]["started_utc"] > deploy_record["ended_utc"]
    assert state["status"] == "passed"
    assert (run_dir / "report.html").is_file() and (run_dir / "report.zh.md").is_file()
    # The first environment capture stays; the resumed one is kept beside it.
    assert (run_dir / "results" / "environment.json").is_file()
    assert list((run_dir / "results").glob("environment.resume-*.json"))

    again = run_cli("run", "--resume", str(run_dir), env=_env(tmp_path, stub_notebooks))
    assert again.returncode == 0, again.stdout + again.stderr
    assert _executions(run_dir) == ["deploy", "latency", "latency", "throughput"]  # nothing left to do
    assert "report      kept" in again.stdout


def test_resume_of_a_stages_subset_finishes_that_subset_only(tmp_path, stub_notebooks):
    """`studykit run P --stages deploy,latency`, Ctrl-C, `--resume <relative dir>`: the resume finishes deploy and
    latency; throughput, in the params file's stages but never asked for, stays unrun."""
    params = tiny_study(tmp_path, {"stages": ["deploy", "latency", "throughput", "report"]})
    proc = _runner(["run", str(params), "--stages", "deploy,latency"], _env(tmp_path, stub_notebooks, latency="hang"))
    try:
        deadline = time.monotonic() + 120
        while not (found := list((tmp_path / "o").glob("*/*/latency.started"))):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        run_dir = found[0].parent
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        (tmp_path / "release").touch()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    result = run_cli("run", "--resume", os.path.relpath(run_dir, ROOT), env=_env(tmp_path, stub_notebooks))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _executions(run_dir) == ["deploy", "latency", "latency"]
    state = read_json(run_dir / "run.json")
    assert state["requested_stages"] == ["deploy", "latency"]
    assert state["resumes"][0]["stages"] == ["deploy", "latency"]
    assert "throughput" not in state["stages"]
    assert state["status"] == "passed"


def test_failure_does_not_stop_later_stages_and_report_is_written(tmp_path, stub_notebooks):
    params = tiny_study(tmp_path, {"stages": ["deploy", "latency", "throughput", "report"]})
    result = run_cli("run", str(params), env=_env(tmp_path, stub_notebooks, latency="fail"))
    assert result.returncode == 1, result.stdout + result.stderr
    # Kernels over IPC: ipykernel's warning about unencrypted TCP is not printed (it goes to the runner's stderr).
    assert "without encryption" not in result.stdout + result.stderr
    # One plain line per step (stdout is a pipe here): the log each stub stage writes is its step.
    assert "      logs/deploy-serve.log: " in result.stdout, result.stdout
    run_dir = next((tmp_path / "o").glob("*/*/"))
    state = read_json(run_dir / "run.json")
    assert [state["stages"][s]["status"] for s in ("deploy", "latency", "throughput", "report")] == \
        ["passed", "failed", "passed", "passed"]
    assert "stub failure for latency" in state["stages"]["latency"]["error"]
    zh = (run_dir / "report.zh.md").read_text()
    en = (run_dir / "report.en.md").read_text()
    assert "本阶段(latency)失败" in zh and "This stage (latency) failed" in en
    assert "stub failure for latency" in zh and "stub failure for latency" in en

    # The failed stage alone is re-run on resume; its failed attempt is kept beside the new one.
    resumed = run_cli("run", "--resume", str(run_dir), env=_env(tmp_path, stub_notebooks))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _executions(run_dir) == ["deploy", "latency", "throughput", "latency"]
    assert "This stage (latency) failed" not in (run_dir / "report.en.md").read_text()
    (attempt,) = (run_dir / "attempts").glob("latency-*/")
    archived = read_json(attempt / "results" / "latency.json")
    assert archived["status"] == "failed" and "stub failure for latency" in archived["failures"][0]
    # The archived results name the archived files, which still hold the failed attempt's content
    # (attempt 2 of the executions log), while the live files are the new attempt's (4).
    files = archived["params"]
    assert files["raw_json"] == str(attempt / "raw" / "bench.json")
    assert files["server_log"] == str(attempt / "logs" / "latency-serve.log")
    assert archived["charts"] == files["charts"] == [str(attempt / "charts" / "latency-bars.png")]
    assert files["raw_dir_relative"] == str((attempt / "raw").relative_to(run_dir))
    assert files["note"] == f"see {(attempt / 'logs' / 'latency-serve.log').relative_to(run_dir)}"
    assert Path(files["raw_json"]).read_text() == "2"
    assert Path(files["server_log"]).read_text() == Path(archived["charts"][0]).read_text() == "attempt 2"
    assert (run_dir / "raw" / "latency" / "bench.json").read_text() == "4"
    assert (run_dir / "logs" / "latency-serve.log").read_text() == "attempt 4"
    assert (attempt / "notebooks" / "latency.ipynb").is_file()
    assert read_json(attempt / "run-record.json")["status"] == "failed"
    assert read_json(run_dir / "results" / "latency.json")["status"] == "passed"


def test_runner_reaps_a_process_group_its_stage_left_behind(tmp_path, stub_notebooks):
    params = tiny_study(tmp_path, {"stages": ["deploy"]})
    result = run_cli("run", str(params), env=_env(tmp_path, stub_notebooks, deploy="leave"))
    run_dir = next((tmp_path / "o").glob("*/*/"))
    assert (run_dir / "leftover.pid").exists(), result.stdout + result.stderr
    pid = int((run_dir / "leftover.pid").read_text())
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert not _running(pid), f"leftover process {pid} survived the runner"
        assert not list((run_dir / "pids").glob("*.pid"))
    finally:
        if _running(pid):
            os.killpg(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_fail_fast_skips_later_stages_but_still_writes_the_report(tmp_path, stub_notebooks):
    params = tiny_study(tmp_path, {"stages": ["deploy", "latency", "throughput", "report"]})
    result = run_cli("run", str(params), "--fail-fast", env=_env(tmp_path, stub_notebooks, latency="raise"))
    assert result.returncode == 1, result.stdout + result.stderr
    # Kernels over IPC: ipykernel's warning about unencrypted TCP is not printed (it goes to the runner's stderr).
    assert "without encryption" not in result.stdout + result.stderr
    # One plain line per step (stdout is a pipe here): the log each stub stage writes is its step.
    assert "      logs/deploy-serve.log: " in result.stdout, result.stdout
    run_dir = next((tmp_path / "o").glob("*/*/"))
    state = read_json(run_dir / "run.json")
    assert "throughput" not in state["stages"]
    assert state["stages"]["report"]["status"] == "passed"
    assert "RuntimeError: stub exception in latency" in state["stages"]["latency"]["error"]
    en = (run_dir / "report.en.md").read_text()
    assert "RuntimeError: stub exception in latency" in en
    assert "This stage (throughput) was requested but did not run" in en


def test_report_command_rebuilds_the_report_alone(tmp_path, stub_notebooks):
    params = tiny_study(tmp_path, {"stages": ["deploy"]})
    first = run_cli("run", str(params), env=_env(tmp_path, stub_notebooks))
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir = next((tmp_path / "o").glob("*/*/"))
    assert not (run_dir / "report.html").exists()
    result = run_cli("report", str(run_dir), env=_env(tmp_path, stub_notebooks))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"report: {run_dir / 'report.html'}" in result.stdout
    assert _executions(run_dir) == ["deploy"]
    state = read_json(run_dir / "run.json")
    assert state["stages"]["report"]["status"] == "passed"
    summary = read_json(run_dir / "results" / "report.json")
    assert summary["status"] == "passed" and set(summary["files"]) == {"report.zh.md", "report.en.md", "report.html"}
    assert (run_dir / "notebooks" / "report.ipynb").is_file()

    bad = run_cli("report", str(run_dir), "--reference", str(tmp_path / "nowhere.yaml"),
                  env=_env(tmp_path, stub_notebooks))
    assert bad.returncode == 1
    assert "nowhere.yaml" in read_json(run_dir / "run.json")["stages"]["report"]["error"]
    assert "nowhere.yaml" in (run_dir / "report.en.md").read_text()  # still written, saying why

    missing = run_cli("report", str(tmp_path / "not-a-run"))
    assert missing.returncode == 2 and "not a run directory" in missing.stderr


def test_study_matrix_writes_one_comparison(tmp_path, stub_notebooks):
    a = tiny_study(tmp_path, {"name": "study-a", "stages": ["deploy", "latency"]})
    b = tiny_study(tmp_path, {"name": "study-b", "stages": ["deploy", "latency"]})
    result = run_cli("run", str(a), str(b), env=_env(tmp_path, stub_notebooks, latency="fail"))
    assert result.returncode == 1, result.stdout + result.stderr
    matrix = next((tmp_path / "o").glob("matrix-*/"))
    runs = read_json(matrix / "matrix.json")["runs"]
    assert [Path(r).parent.name for r in runs] == ["study-a", "study-b"]
    en = (matrix / "comparison.en.md").read_text()
    assert "1. study-a" in en and "2. study-b" in en
    assert "| latency: Average latency | s | 12.500 | 12.500 (+0.0 %) |" in en  # a failed stage's partial number
    assert "| latency | failed | failed |" in en
    assert (matrix / "comparison.zh.md").is_file()
    assert "<table>" in (matrix / "comparison.html").read_text()
