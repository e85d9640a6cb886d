"""One command plan: `studykit run --dry-run` prints what the stages run. The default study's dry run is compared,
command by command, with commands.jsonl of a real run of it (the golden run): ports, the run directory and the
model directory normalised, nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

from studykit.evidence.journal import read_commands
from studykit.plan import RUN_DIR_PLACEHOLDER
from studykit.runner.dryrun import plan
from studykit.weights.store import checkpoint
from studykit.params import load_study

GOLDEN = Path(__file__).parent / "data" / "runs" / "golden"


def normalise(text: str, model_dirs: list[str]) -> str:
    for d in model_dirs:
        text = text.replace(d, "MODEL_DIR")
    text = text.replace("RUN_DIR/", "")
    text = re.sub(r"--port \d+", "--port PORT", text)
    return re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT", text)


def final_attempts(run_dir: Path) -> list[dict]:
    """The journal's records of the attempts whose results stand: a resumed stage's earlier attempt stays in
    commands.jsonl (what ran is never forgotten) but began before the stage's record in run.json."""
    stages = json.loads((Path(run_dir) / "run.json").read_text())["stages"]
    return [r for r in read_commands(run_dir)
            if r.get("stage") not in stages or (r.get("started_utc") or "") >= stages[r["stage"]]["started_utc"]]


def with_swept_rates(run_dir: Path, study, steps: list) -> list:
    """The dry run's serve sweep (`request_rates: auto`) names its rates only as RATE: they are measured. Put in
    the rates the run chose, after checking them by hand against the two probe points' raw bench files."""
    (i,) = [k for k, s in enumerate(steps) if s.stage == "serve" and s.label == "sweep"] or [None]
    if i is None:
        return steps
    sweep = json.loads((Path(run_dir) / "results" / "serve.json").read_text())["sweep"]
    raw = Path(run_dir) / "raw" / "serve"
    sync = json.loads((raw / "rate-inf-conc-1-rep-1.json").read_text())["request_throughput"]
    saturated = json.loads((raw / "rate-inf-rep-1.json").read_text())["request_throughput"]
    n = study.serve.sweep_rates
    # between the two throughputs, rising; a starved host can measure the saturated point below the synchronous one
    lo, hi = sorted((sync, saturated))
    assert sweep["rates"] == [float(f"{lo + (hi - lo) * k / (n + 1):.3g}") for k in range(1, n + 1)]
    from studykit.stages.serve.stage import plan as serve_plan

    done = {s.label for s in steps if s.stage == "serve"}
    swept = [s for s in serve_plan(study, checkpoint(study).model_dir, RUN_DIR_PLACEHOLDER, 0, sweep["rates"])
             if s.kind == "command" and s.label not in done]
    return steps[:i] + swept + steps[i + 1:]


def assert_dry_run_equals_journal(run_dir: Path, recorded_model_dir: str, run_dir_prefix: str = "") -> None:
    """Every command the dry run prints (servers, benches, lm-eval runs) is the one the run journaled, in order."""
    study = load_study(run_dir / "params.yaml")
    _, steps = plan(study)
    dirs = [str(checkpoint(study).model_dir), recorded_model_dir]

    def norm(text: str) -> str:
        return normalise(text.replace(run_dir_prefix, "") if run_dir_prefix else text, dirs)

    steps = with_swept_rates(run_dir, study, steps)
    planned = [(s.stage, s.label, norm(" ".join(s.argv[1:]))) for s in steps
               if s.kind in ("server", "command") and s.stage != "weights"]
    recorded = [(r["stage"], r["label"], norm(" ".join(r["argv"][1:]))) for r in final_attempts(run_dir)
                if r.get("is_vllm") or str(r.get("label", "")).startswith("lm-eval")]
    assert len(planned) == len(recorded) >= 8
    for want, got in zip(planned, recorded):
        assert want == got


def test_dry_run_equals_the_commands_the_real_run_recorded():
    info = json.loads((GOLDEN / "golden.json").read_text())
    assert_dry_run_equals_journal(GOLDEN, info["model_dir"])


def test_every_request_the_dry_run_describes_was_made():
    study = load_study(GOLDEN / "params.yaml")
    _, steps = plan(study)
    planned = {(s.stage, s.label) for s in steps if s.kind in ("http", "python") and s.stage not in ("weights", "report")}
    recorded = {(r["stage"], r["label"]) for r in read_commands(GOLDEN) if not r.get("is_vllm")}
    assert planned <= recorded, planned - recorded


def test_one_server_for_the_stages_with_identical_serve_commands():
    """The default run: the deploy real-weight gate's server served serve and accuracy too; ≤ 6 engine starts."""
    records = [r for r in final_attempts(GOLDEN) if r.get("is_vllm")]
    servers = [r for r in records if r["argv"][3] == "serve"]
    (shared,) = [r for r in servers if r["extra"].get("shared_by")]
    assert (shared["stage"], shared["label"]) == ("deploy", "real-gate")
    assert shared["extra"]["shared_by"] == ["deploy", "serve", "accuracy", "tasks"]
    assert shared["extra"]["ready_seconds"] > 0 and shared["extra"]["stopped_by"] == "graceful"
    for stage in ("serve", "accuracy", "tasks"):
        assert json.loads((GOLDEN / "results" / f"{stage}.json").read_text())["server"] == "deploy/real-gate"
    engine_starts = servers + [r for r in records if r["argv"][3:5] in (["bench", "latency"], ["bench", "throughput"])]
    assert len(engine_starts) <= 6, [(r["stage"], r["label"]) for r in engine_starts]
    run = json.loads((GOLDEN / "run.json").read_text())
    assert run["stages"]["serve"]["vllm_seconds"] > 0.9 * run["stages"]["serve"]["wall_seconds"] - 15


def test_the_dry_run_creates_nothing_where_it_runs(tmp_path, monkeypatch):
    """Plans build paths under the RUN_DIR placeholder: no directory of that name may appear in the working
    directory (the tasks stage's plan once made RUN_DIR/raw/tasks there)."""
    from conftest import DEFAULT_PARAMS

    study = load_study(DEFAULT_PARAMS)
    assert "tasks" in study.stages
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    plan(study)
    assert list(here.iterdir()) == []
