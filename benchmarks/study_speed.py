"""Where a study's time goes: stage walls, engine starts and their start-up seconds, and the kit's own overhead.

    flock /tmp/studykit-vllm.lock .venv/bin/python benchmarks/study_speed.py [PARAMS] [--stages a,b] [--run-dir RUN]

Runs `studykit run PARAMS` (all stages in the file, or --stages), or reads an existing RUN, then prints:
- each stage's wall seconds (run.json) and the seconds inside its vllm commands (the union of their intervals from
  commands.jsonl: bench serve runs inside a server's lifetime, and summing both would count that time twice);
- every engine start (a `vllm serve`, or a `vllm bench latency|throughput`, which starts its own engine) with its
  seconds to ready: for a server the kit's ready_seconds (process start to /health answering); for a bench, process
  start to vLLM's "init engine ... took" line (studykit.startup.startup_breakdown), plus the parts vLLM logs
  (weight loading, engine init = profiling + KV cache + warm-up, graph capture, torch.compile);
- start-up seconds and their share of the study wall;
- the kit overhead of the performance stages (latency, throughput, serve): their wall / their seconds inside vllm.
- the latency stage's decode roofline: % of the bandwidth limit, and the probe's method, threads and cores.
The issue's targets are printed beside the figures; this script reports, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from studykit.evidence.journal import parse_utc, read_commands
from studykit.evidence.rundir import read_json
from studykit.runner.execute import vllm_seconds
from studykit.engine.startup import engine_starts

ROOT = Path(__file__).resolve().parents[1]
PERF_STAGES = ("latency", "throughput", "serve")
TARGET_STUDY_WALL_S = 6 * 60
TARGET_ENGINE_STARTS = 6
TARGET_OVERHEAD = 1.05
PARTS = (("weights_load_s", "weights"), ("engine_init_s", "engine init"), ("graph_capture_s", "graph capture"),
         ("torch_compile_s", "compile"))


def _utc(stamp: str) -> datetime:
    return parse_utc(stamp)


def stage_rows(run: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for stage, info in run.get("stages", {}).items():
        wall = info.get("wall_seconds")
        # the runner's figure: clipped to the stage's window, shared servers included
        inside = info.get("vllm_seconds") if info.get("vllm_seconds") is not None else vllm_seconds(run_dir, stage)
        rows.append({"stage": stage, "status": info.get("status"), "wall_s": wall, "vllm_s": inside,
                     "ratio": wall / inside if wall and inside else None})
    return rows


def study_wall_s(run: dict[str, Any], commands: list[dict[str, Any]]) -> float | None:
    """From the run's start to the last end of a stage or command (includes the kit's work between stages; a run
    still going is measured to its last finished command)."""
    ends = [_utc(s["ended_utc"]) for s in run.get("stages", {}).values() if s.get("ended_utc")]
    ends += [_utc(c["ended_utc"]) for c in commands if c.get("ended_utc")]
    if not ends or not run.get("started_utc"):
        return None
    return (max(ends) - _utc(run["started_utc"])).total_seconds()


def _fmt(value: float | None, width: int = 7, digits: int = 1) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def _verdict(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "meets target" if value <= target else "misses target"


def report(run_dir: Path, out=print) -> dict[str, Any]:
    run = json.loads((run_dir / "run.json").read_text())
    stages = stage_rows(run, run_dir)
    starts = engine_starts(run_dir)
    wall = study_wall_s(run, read_commands(run_dir))
    out(f"run {run_dir}")
    out(f"\n{'stage':<11} {'status':<8} {'wall s':>7} {'vllm s':>7} {'wall/vllm':>9}")
    for r in stages:
        out(f"{r['stage']:<11} {r['status']!s:<8} {_fmt(r['wall_s'])} {_fmt(r['vllm_s'])} {_fmt(r['ratio'], 9, 3)}")

    out(f"\nengine starts: {len(starts)}")
    out(f"{'stage':<11} {'label':<24} {'kind':<17} {'ready s':>7} {'1st log':>7} {'last proc':>9}  "
        + " ".join(f"{name:>13}" for _, name in PARTS))
    for r in starts:
        out(f"{r['stage']:<11} {r['label'][:24]:<24} {r['kind']:<17} {_fmt(r['ready_s'])} {_fmt(r['to_first_log_s'])} "
            f"{_fmt(r['worker_first_log_s'], 9)}  " + " ".join(_fmt(r[k], 13, 2) for k, _ in PARTS))
    out("ready s: servers = kit ready_seconds (process start to /health); benches = process start to vLLM's "
        "'init engine ... took' line.\n1st log: process start to vLLM's first log line (importing vLLM); last proc: "
        "first log line to the first line of the last vLLM process to speak (spawn + import of engine core and "
        "worker).\nParts as vLLM logs them; '-' = not in the log")

    startup_s = sum(r["ready_s"] for r in starts if r["ready_s"] is not None)
    unmeasured = sum(r["ready_s"] is None for r in starts)
    share = startup_s / wall if wall else None
    perf = [r for r in stages if r["stage"] in PERF_STAGES and r["wall_s"] and r["vllm_s"]]
    perf_wall, perf_vllm = sum(r["wall_s"] for r in perf), sum(r["vllm_s"] for r in perf)
    overhead = perf_wall / perf_vllm if perf_vllm else None

    out("\nsummary                          figure    target")
    out(f"study wall s                    {_fmt(wall, 7)}    <= {TARGET_STUDY_WALL_S}  ({_verdict(wall, TARGET_STUDY_WALL_S)})")
    out(f"engine starts                   {len(starts):>7}    <= {TARGET_ENGINE_STARTS}  "
        f"({_verdict(len(starts), TARGET_ENGINE_STARTS)})")
    out(f"start-up s                      {_fmt(startup_s)}"
        + (f"    ({unmeasured} start(s) without a ready figure not counted)" if unmeasured else ""))
    out(f"start-up share of study wall    {_fmt(100 * share if share is not None else None)} %")
    out(f"kit overhead (perf stages)      {_fmt(overhead, 7, 3)}    <= {TARGET_OVERHEAD}  "
        f"({_verdict(overhead, TARGET_OVERHEAD)}; {' + '.join(r['stage'] for r in perf) or 'no perf stage'})")
    roof = recorded_roofline(run_dir)
    if roof:
        limit = roof.get("limit") or {}
        out(f"roofline (latency decode)       {_fmt(roof.get('efficiency_percent'))} %    decode "
            f"{_fmt(roof.get('decode_ms_per_token'), 1, 2)} ms/token, limit {_fmt(limit.get('bandwidth_gbps'), 1)} GB/s "
            f"({limit.get('source')}, {limit.get('method', '-')}, {limit.get('threads', '-')} threads on cores "
            f"{limit.get('cores', '-')})")
    else:
        out("roofline (latency decode)             -    (no latency roofline in this run)")
    return {"run_dir": str(run_dir), "stages": stages, "engine_starts": starts, "study_wall_s": wall,
            "startup_s": startup_s, "startup_share": share, "overhead": overhead, "roofline": roof}


def recorded_roofline(run_dir: Path) -> dict[str, Any] | None:
    """The latency stage's roofline as the run recorded it (studykit.roofline computed it there)."""
    path = run_dir / "results" / "latency.json"
    if not path.is_file():
        return None
    roof = read_json(path).get("roofline") or {}
    return roof if roof.get("efficiency_percent") is not None else None


def run_study(params: str, stages: str | None) -> Path | None:
    argv = [sys.executable, "-m", "studykit.runner.cli", "run", params] + (["--stages", stages] if stages else [])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True)
    print(proc.stdout[-2000:])
    if proc.returncode != 0:  # stderr is mostly kernel chatter; it matters when the run failed
        print(proc.stderr[-2000:])
    print(f"studykit run: exit {proc.returncode}, {time.perf_counter() - t0:.1f} s")
    found = [line.split()[-1] for line in (proc.stdout + proc.stderr).splitlines() if "run directory" in line]
    candidates = [Path(x) for x in found if (Path(x) / "run.json").is_file()]
    return candidates[-1] if candidates else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="?", default=str(ROOT / "params" / "smollm2-135m-cpu.yaml"))
    ap.add_argument("--stages", help="comma-separated stages to run (default: all in the params file)")
    ap.add_argument("--run-dir", help="read an existing run instead of running the study")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir) if args.run_dir else run_study(args.params, args.stages)
    if run_dir is None or not (run_dir / "run.json").is_file():
        print(f"no run.json in {run_dir or 'the output above'}", file=sys.stderr)
        return 2
    figures = report(run_dir)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
