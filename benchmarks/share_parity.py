"""Does sharing one server between stages change what they measure? Runs the same study twice, once with
`server.share: true` (deploy's real gate, serve and accuracy use one `vllm serve`) and once with
`server.share: false` (each stage starts its own), and prints, metric by metric:

- serve: each point's mean with its 95 % interval over `--repeats` runs (vLLM's own names: mean TTFT, TPOT,
  E2EL, throughputs), the difference, and whether the two intervals overlap;
- accuracy: teacher-forced top-1 agreement, mean KL, probability MAE, free-running token agreement (greedy
  decoding of the same server flags: these should be equal, not merely close);
- engine starts of each run (commands.jsonl), the point of sharing.

    flock /tmp/studykit-vllm.lock .venv/bin/python benchmarks/share_parity.py [PARAMS] [--repeats 3]
    .venv/bin/python benchmarks/share_parity.py --run-dirs SHARED_RUN UNSHARED_RUN   # read two existing runs

The script reports; it does not assert. Overlapping intervals are what "agree within their noise" means here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from study_speed import run_study  # this folder is on sys.path when a script in it runs
from studykit.params import resolve_paths
from studykit.evidence.rundir import read_json
from studykit.engine.startup import engine_starts

ROOT = Path(__file__).resolve().parents[1]
SERVE_METRICS = ("mean_ttft_ms", "mean_tpot_ms", "mean_e2el_ms", "request_throughput", "output_throughput")
ACCURACY_METRICS = (("teacher_forced", "top1_agreement"), ("teacher_forced", "mean_kl"),
                    ("teacher_forced", "prob_mae"), ("free_running", "token_agreement"))


def study_variant(params: Path, share: bool, repeats: int, out_dir: Path) -> Path:
    data = yaml.safe_load(params.read_text())
    resolve_paths(data, params.parent)  # the variant is written elsewhere: its relative paths must keep their meaning
    data["name"] = f"{data['name']}-{'shared' if share else 'unshared'}"
    data["stages"] = ["deploy", "serve", "accuracy"]
    data.setdefault("server", {})["share"] = share
    data.setdefault("serve", {})["repeats"] = repeats
    data.setdefault("deploy", {})["dummy_gate"] = False  # the dummy gate never shares; it only adds a start to both
    path = out_dir / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _load(run_dir: Path, stage: str) -> dict[str, Any]:
    path = run_dir / "results" / f"{stage}.json"
    return read_json(path) if path.is_file() else {}


def _interval(stat: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    return stat.get("mean"), stat.get("ci95_low"), stat.get("ci95_high")


def _fmt(v: float | None, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "-"


def compare(shared: Path, unshared: Path, out=print) -> dict[str, Any]:
    rows = []
    a_points, b_points = _load(shared, "serve").get("points", []), _load(unshared, "serve").get("points", [])
    out(f"shared   {shared}\nunshared {unshared}\n")
    out(f"{'serve point':<14} {'metric':<20} {'shared mean [95% CI]':>30} {'unshared mean [95% CI]':>30} "
        f"{'diff %':>7}  overlap")
    for pa, pb in zip(a_points, b_points):
        point = f"rate {pa['request_rate']}"
        for name in SERVE_METRICS:
            ma, la, ha = _interval(pa["metrics"].get(name, {}))
            mb, lb, hb = _interval(pb["metrics"].get(name, {}))
            if ma is None or mb is None:
                continue
            overlap = None if None in (la, ha, lb, hb) else (la <= hb and lb <= ha)
            diff = 100 * (mb - ma) / ma if ma else None
            rows.append({"point": point, "metric": name, "shared": [ma, la, ha], "unshared": [mb, lb, hb],
                         "diff_percent": diff, "overlap": overlap})
            out(f"{point:<14} {name:<20} {_fmt(ma):>10} [{_fmt(la)}, {_fmt(ha)}]".ljust(66)
                + f" {_fmt(mb):>10} [{_fmt(lb)}, {_fmt(hb)}]".ljust(31) + f" {_fmt(diff, 1):>7}  "
                + {True: "yes", False: "NO", None: "-"}[overlap])
    acc_a, acc_b = _load(shared, "accuracy"), _load(unshared, "accuracy")
    out(f"\n{'accuracy':<36} {'shared':>10} {'unshared':>10}")
    for block, key in ACCURACY_METRICS:
        va, vb = (acc_a.get(block) or {}).get(key), (acc_b.get(block) or {}).get(key)
        rows.append({"point": "accuracy", "metric": f"{block}.{key}", "shared": va, "unshared": vb,
                     "equal": va == vb})
        out(f"{block + '.' + key:<36} {_fmt(va, 4):>10} {_fmt(vb, 4):>10}" + ("" if va == vb else "  (differ)"))
    tokens_equal = [pa.get("vllm_tokens") == pb.get("vllm_tokens")
                    for pa, pb in zip(acc_a.get("per_prompt", []), acc_b.get("per_prompt", []))]
    out(f"greedy tokens identical on {sum(tokens_equal)}/{len(tokens_equal)} prompts")
    starts = {label: len(engine_starts(d)) for label, d in (("shared", shared), ("unshared", unshared))}
    out(f"\nengine starts: shared {starts['shared']}, unshared {starts['unshared']}")
    return {"rows": rows, "engine_starts": starts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params", nargs="?", default=str(ROOT / "params" / "smollm2-135m-cpu.yaml"))
    ap.add_argument("--repeats", type=int, default=3, help="serve runs per point (for the 95 %% intervals)")
    ap.add_argument("--run-dirs", nargs=2, metavar=("SHARED", "UNSHARED"), help="compare two existing runs")
    args = ap.parse_args(argv)
    if args.run_dirs:
        compare(Path(args.run_dirs[0]), Path(args.run_dirs[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="share-parity-") as tmp:
        tmp_path = Path(tmp)
        shared = run_study(str(study_variant(Path(args.params).resolve(), True, args.repeats, tmp_path)), None)
        unshared = run_study(str(study_variant(Path(args.params).resolve(), False, args.repeats, tmp_path)), None)
    if shared is None or unshared is None:
        print("a run directory is missing: see the output above", file=sys.stderr)
        return 2
    compare(shared, unshared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
