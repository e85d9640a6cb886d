"""Kit overhead of the performance stages: wall time of each stage against the time spent inside the vllm
commands it ran. Target: ratio <= 1.10.

    flock /tmp/studykit-vllm.lock .venv/bin/python benchmarks/overhead.py [PARAMS] [--run-dir RUN]

Runs `studykit run PARAMS --stages latency,throughput,serve` (or reads an existing RUN), then prints per stage:
wall seconds (run.json), vllm seconds as the union of the vllm commands' intervals from commands.jsonl (the serve
stage's bench commands run inside the server's lifetime; summing both would count that time twice), and the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from studykit.runner import vllm_seconds

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("latency", "throughput", "serve")


def stage_figures(run_dir: Path) -> list[dict]:
    run = json.loads((run_dir / "run.json").read_text())
    stages = run.get("stages", {})
    rows = []
    for stage in STAGES:
        info = stages.get(stage)
        if not info:
            continue
        inside = vllm_seconds(run_dir, stage)
        rows.append({"stage": stage, "status": info.get("status"), "wall_s": info["wall_seconds"],
                     "vllm_s": round(inside, 2),
                     "ratio": round(info["wall_seconds"] / inside, 3) if inside else None})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="?", default=str(ROOT / "params" / "smollm2-135m-cpu.yaml"))
    ap.add_argument("--run-dir", help="read an existing run instead of running the stages")
    args = ap.parse_args(argv)
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        proc = subprocess.run([sys.executable, "-m", "studykit.cli", "run", args.params, "--stages", ",".join(STAGES)],
                              cwd=ROOT, capture_output=True, text=True)
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
        found = [line.split()[-1] for line in (proc.stdout + proc.stderr).splitlines() if "run directory" in line]
        candidates = [Path(x) for x in found if (Path(x) / "run.json").is_file()]
        if not candidates:
            print("could not find the run directory in the output above", file=sys.stderr)
            return 2
        run_dir = candidates[-1]
    rows = stage_figures(run_dir)
    print(f"run {run_dir}")
    print(f"{'stage':<11} {'status':<7} {'wall s':>8} {'vllm s':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['stage']:<11} {r['status']:<7} {r['wall_s']:>8.1f} {r['vllm_s']:>8.1f} {r['ratio'] or 0:>6.3f}")
    wall = sum(r["wall_s"] for r in rows)
    inside = sum(r["vllm_s"] for r in rows)
    print(f"{'total':<19} {wall:>8.1f} {inside:>8.1f} {wall / inside if inside else 0:>6.3f}  (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
