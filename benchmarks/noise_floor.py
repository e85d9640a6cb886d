"""The noise floor of a rerun: how much the default study's performance numbers move between clean runs on this
host, the margins `studykit compare` should use, the false-alarm rate of its verdict on clean pairs, and the
smallest injected decode delay it detects.

    .venv/bin/python benchmarks/noise_floor.py [--runs 3] [--run-dirs A,B] [--delays-ms 1,2,4] [--out noise-floor.json]

1. Runs the default study's perf stages (latency, throughput, serve) `--runs` times, clean, one after another.
2. Per metric: the headline value of every run, the run-to-run coefficient of variation and the largest change
   between two runs; the margin = t(0.975, runs − 1) x √2 x the coefficient of variation (at least 1 %): the
   change between two new clean runs stays inside it 95 % of the time, written to --out in the form
   `studykit compare --noise-floor` reads, with where it was measured. `--out
   lib/studykit/data/noise-floor-cpu.json` replaces the floor the kit ships (compare's default for CPU runs).
3. Compares every clean pair with those margins and counts metrics flagged better or worse: the false-alarm rate
   (in-sample: the margins come from the same runs, so this is a lower bound; a fresh clean pair tests it).
   The same count with `studykit compare`'s default (the shipped floor) and with flat ±5 % margins follows,
   then (four clean runs or more) each pair judged with margins from the other runs only: the out-of-sample
   rate.
4. Runs the study once per delay with the fault plugin's decode_delay (STUDYKIT_FAULT=decode_delay,ms=X in every
   vLLM process) and compares it with each clean run: the smallest delay flagged worse on latency and TPOT.
Run it alone on the machine: timings under load are not figures. It prints; it does not assert.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy.stats import t as t_dist
from studies import ROOT, run_stages, study_variant
from studykit.compare.runs import NoiseFloor, compare_runs, without_point
from studykit.evidence.environment import cpu_model
from studykit.compare.samples import run_metrics

STAGES = "latency,throughput,serve"


def run(params: Path) -> Path:
    t0 = time.monotonic()
    code, run_dir, tail = run_stages(params, STAGES)
    if run_dir is None:
        raise SystemExit(f"study failed (exit {code}):\n{tail}")
    print(f"  run {run_dir} exit {code} in {time.monotonic() - t0:.0f} s", flush=True)
    return run_dir


def floor(runs: list[Path]) -> dict:
    values: dict[str, list[float]] = {}
    for r in runs:
        for key, m in run_metrics(r).items():
            if m.value is not None and m.kind != "paired":
                values.setdefault(key, []).append(m.value)
    out = {}
    for key, xs in sorted(values.items()):
        if len(xs) < 2:
            continue
        mean = statistics.fmean(xs)
        cv = statistics.stdev(xs) / mean if mean else 0.0
        worst = max(abs(b / a - 1) for a, b in itertools.permutations(xs, 2) if a)
        # the change between two new runs has a standard deviation of sqrt(2) x CV; with the CV estimated from n
        # runs, Student's t bounds it 95 % of the time (3 x CV, the normal bound, under-covers: held-out pairs of
        # 2026-12-04 flagged 20 % of metrics with it)
        margin = max(0.01, t_dist.ppf(0.975, len(xs) - 1) * math.sqrt(2) * cv)
        out[key] = {"values": xs, "cv": cv, "max_change": worst, "margin": margin}
    # a serve point another study has and this one did not measure: the metric's largest margin over the points
    for key in [k for k in out if "[" in k]:
        pointless = without_point(key)
        if pointless not in out or out[pointless]["margin"] < out[key]["margin"]:
            out[pointless] = {"margin": out[key]["margin"], "from": key}
    return out


def false_alarms(pairs, name: str) -> None:
    """Counts the metrics flagged better or worse on clean pairs, each pair (a, b, floor) judged with its floor
    (None: `studykit compare`'s default)."""
    flagged = total = 0
    for a, b, margins in pairs:
        changes = compare_runs(a, b, margins)["changes"]
        bad = [c.key for c in changes if c.verdict in ("worse", "better")]
        flagged += len(bad)
        total += len(changes)
        print(f"clean pair {a.name} vs {b.name} ({name}): {len(bad)} of {len(changes)} metrics flagged {bad}")
    if total:
        print(f"false-alarm rate on clean pairs, {name}: {flagged}/{total} = {100 * flagged / total:.1f} % "
              "(target <= 5 %)")


def margins_of(runs: list[Path]) -> NoiseFloor:
    return NoiseFloor.of(floor(runs), f"{len(runs)} clean runs")


def provenance(runs: list[Path]) -> dict:
    """Where the floor was measured, for the reader of a comparison that uses it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"runs": f"{len(runs)} clean runs of the default study's {STAGES}", "host": cpu_model(),
            "cores": os.cpu_count(), "utc": time.strftime("%Y-%m-%d", time.gmtime()),
            "commit": commit.stdout.strip() or None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="clean runs in all, --run-dirs included")
    ap.add_argument("--delays-ms", default="1,2,4", help="decode delays to inject, ms per step")
    ap.add_argument("--out", default="noise-floor.json")
    ap.add_argument("--run-dirs", help="comma-separated clean runs of the same study to reuse (e.g. a `make study` "
                    "run); only the rest of --runs is run")
    ap.add_argument("--delayed-runs", help="comma-separated MS=RUN_DIR: delayed runs to reuse instead of running")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="noise-floor-"))
    clean = [Path(p).resolve() for p in (args.run_dirs or "").split(",") if p]
    clean += [run(study_variant(tmp, None)) for _ in range(args.runs - len(clean))]
    metrics = floor(clean)
    Path(args.out).write_text(json.dumps({"measured": provenance(clean), "run_dirs": [str(r) for r in clean],
                                          "metrics": metrics}, indent=2) + "\n")
    margins = NoiseFloor.of(metrics, "measured margins")
    print(f"\nrun-to-run spread over {len(clean)} clean runs (margin = t(0.975, n-1) x sqrt(2) x CV, at least 1 %):")
    print(f"{'metric':<42} {'values':<34} {'CV %':>6} {'max Δ %':>8} {'margin %':>9}")
    for key, v in metrics.items():
        if "values" not in v:
            continue
        shown = ", ".join(f"{x:.4g}" for x in v["values"])
        print(f"{key:<42} {shown:<34} {100 * v['cv']:6.2f} {100 * v['max_change']:8.2f} {100 * v['margin']:9.2f}")
    pairs = list(itertools.combinations(clean, 2))
    false_alarms([(a, b, margins) for a, b in pairs], "measured margins")
    # what a user gets without --noise-floor: the floor shipped for the platform, else the flat defaults
    false_alarms([(a, b, None) for a, b in pairs], "compare's default margins")
    false_alarms([(a, b, NoiseFloor({}, "flat")) for a, b in pairs], "flat ±5 % margins")
    # margins from the other clean runs only: the rate a floor measured beforehand gives (two others at least)
    others = {(a, b): [r for r in clean if r not in (a, b)] for a, b in pairs}
    false_alarms([(a, b, margins_of(others[a, b])) for a, b in pairs if len(others[a, b]) >= 2],
                 "margins held out")
    reuse = dict(item.split("=", 1) for item in (args.delayed_runs or "").split(",") if item)
    for ms in [float(x) for x in args.delays_ms.split(",") if x]:
        given = reuse.get(f"{ms:g}")
        delayed = (Path(given).resolve() if given
                   else run(study_variant(tmp, "delay", {"STUDYKIT_FAULT": f"decode_delay,ms={ms:g}"})))
        # against every clean run: one comparison alone would hang on which clean run happened to come first
        for base in clean:
            changes = {c.key: c for c in compare_runs(base, delayed, margins)["changes"]}
            worse = sorted(k for k, c in changes.items() if c.verdict == "worse")
            lat = changes.get("latency.avg_latency")
            tpot = [c for k, c in changes.items() if k.endswith("mean_tpot_ms")]
            print(f"decode delay {ms:g} ms ({delayed.name}) vs {base.name}: worse on {worse}; latency change "
                  f"{'—' if lat is None else f'{100 * lat.change:+.1f} % {lat.verdict}'}; TPOT changes "
                  + ", ".join(f"{c.key} {100 * c.change:+.1f} % {c.verdict}" for c in tpot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
