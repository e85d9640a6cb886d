"""`studykit` command line: run a study, build models, capture the environment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studykit.params import ParamsError
from studykit.stages import STAGE_ORDER
from studykit.weights.store import BUILTIN


def _absolute(args, *names: str) -> None:
    """Every path the user gave, resolved against the directory the command was typed in, before anything runs:
    stage kernels work in notebooks/, so a relative path passed on would name another file there."""
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, list):
            setattr(args, name, [str(Path(v).expanduser().resolve()) for v in value])
        elif isinstance(value, str) and value:
            setattr(args, name, str(Path(value).expanduser().resolve()))


class UsageError(Exception):
    """Bad input found before anything runs: printed, exit 2."""


def _noise_floor(command: str, path: str | None):
    """The --noise-floor file read; a bad one is a UsageError naming it (exit 2 before anything runs)."""
    from studykit.compare.runs import load_noise_floor

    try:
        return load_noise_floor(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(f"studykit {command}: --noise-floor {path} is not a noise floor file of "
                         f"benchmarks/noise_floor.py ({type(err).__name__}: {err})") from None


def _compare_to_baseline(baseline: str, run_dir: Path, fail_on_regression: bool, noise_floor: str | None) -> int:
    from studykit.compare.runs import compare_runs, regressions, write_comparison

    result = compare_runs(baseline, run_dir, _noise_floor("run", noise_floor))
    paths = write_comparison(result, run_dir)
    worse = regressions(result)
    print(f"compared with baseline {baseline}: {paths['comparison.html']}")
    if worse:
        print("worse beyond noise: " + "; ".join(f"{c.key} {c.change:+.3g}" for c in worse))
    else:
        print("no change beyond noise")
    return 1 if worse and fail_on_regression else 0


def _cmd_compare(args) -> int:
    _absolute(args, "runs", "out", "noise_floor")
    if len(args.runs) < 2:
        print("studykit compare: give at least two run directories", file=sys.stderr)
        return 2
    from studykit.compare.runs import compare_runs, regressions, write_comparison
    from studykit.evidence.rundir import outputs_root, utc_stamp

    missing = [r for r in args.runs if not (Path(r) / "results").is_dir()]
    if missing:
        print(f"studykit compare: not run directories (no results/): {missing}", file=sys.stderr)
        return 2
    floor = _noise_floor("compare", args.noise_floor)
    out_root = Path(args.out) if args.out else outputs_root() / f"compare-{utc_stamp()}"
    code = 0
    for i, later in enumerate(args.runs[1:], 1):
        result = compare_runs(args.runs[0], later, floor)
        out = out_root if len(args.runs) == 2 else out_root / f"{i}-{Path(later).name}"
        paths = write_comparison(result, out)
        counts = {}
        for c in result["changes"]:
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
        print(f"{args.runs[0]} -> {later}: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
        print(f"  noise margins: {result['noise_floor'] or 'flat defaults (no measured floor)'}")
        for section, rows in result["differs"].items():
            if rows:
                print(f"  differs in {section}: " + ", ".join(k for k, _, _ in rows[:8])
                      + (f" (+{len(rows) - 8})" if len(rows) > 8 else ""))
        for c in regressions(result):
            print(f"  worse: {c.label} {c.change:+.3g} ({c.why})")
        print(f"  {paths['comparison.html']}")
        if regressions(result) and args.fail_on_regression:
            code = 1
    return code


def _cmd_run(args) -> int:
    from studykit.runner.execute import run_study

    _absolute(args, "params", "resume", "baseline", "noise_floor")
    if args.baseline and not (Path(args.baseline) / "results").is_dir():
        print(f"studykit run: --baseline {args.baseline} is not a run directory (no results/)", file=sys.stderr)
        return 2
    _noise_floor("run", args.noise_floor)

    if args.resume and args.params:
        print("studykit run: give either PARAMS or --resume RUN_DIR, not both", file=sys.stderr)
        return 2
    if not args.resume and not args.params:
        print("studykit run: PARAMS (a study YAML file) is required", file=sys.stderr)
        return 2
    if args.dry_run:
        from studykit.runner.dryrun import dry_run

        codes = [dry_run(p, stages=args.stages) for p in args.params]
        return max(codes)
    if args.params and len(args.params) > 1:
        from studykit.runner.execute import run_matrix

        code, _, _ = run_matrix(args.params, stages=args.stages, fail_fast=args.fail_fast)
        return code
    try:
        code, run_dir = run_study(args.params[0] if args.params else None, stages=args.stages,
                                  fail_fast=args.fail_fast, resume=args.resume, verbose=args.verbose)
    except FileNotFoundError as err:
        print(f"studykit run: {err}", file=sys.stderr)
        return 2
    if args.baseline and run_dir is not None and code != 130:
        code = max(code, _compare_to_baseline(args.baseline, run_dir, args.fail_on_regression, args.noise_floor))
    return code


def _cmd_report(args) -> int:
    from studykit.runner.execute import report_only

    _absolute(args, "run_dir")
    if args.reference and Path(args.reference).expanduser().exists():
        _absolute(args, "reference")
    try:
        code, _ = report_only(args.run_dir, reference=args.reference)
    except FileNotFoundError as err:
        print(f"studykit report: {err}", file=sys.stderr)
        return 2
    return code


def _cmd_model(args) -> int:
    (builtin,) = [b for b in BUILTIN.values() if b.command == args.what]
    # only the default model has a dtype choice; the others are built in bfloat16
    options = {"dtype": args.dtype} if args.what == "build-default" else {}
    print(builtin.build(force=args.force, **options))
    return 0


def _cmd_env(args) -> int:
    from studykit.evidence.environment import capture_environment
    from studykit.params import load_study

    print(json.dumps(capture_environment(load_study(args.params)), indent=2, ensure_ascii=False))
    return 0


def _cmd_data(args) -> int:
    from studykit.params import load_study
    from studykit.stages.tasks.fetch import fetch_study_datasets
    from studykit.weights.files import WeightsError

    study = load_study(args.params)
    try:
        fetched = fetch_study_datasets(study)
    except WeightsError as err:
        print(f"studykit: {err}", file=sys.stderr)
        return 1
    for row in fetched:
        print(f"{row['dataset_path']}: {row['modelscope_id']}@{row['revision']} -> {row['dir']}\n  {row['command']}")
    return 0


def _stages(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in STAGE_ORDER]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {bad}; allowed: {', '.join(STAGE_ORDER)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="studykit", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run one or more studies (each into a new outputs/<study>/<UTC time>/); "
                                     "with several, also a comparison in outputs/matrix-<UTC time>/")
    run.add_argument("params", nargs="*", help="study YAML file(s)")
    run.add_argument("--stages", type=_stages, help=f"comma-separated subset of: {','.join(STAGE_ORDER)}")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed stage")
    run.add_argument("--resume", metavar="RUN_DIR", help="re-run only missing or failed stages of RUN_DIR")
    run.add_argument("--dry-run", action="store_true", help="print every command and variable; start nothing")
    run.add_argument("--verbose", action="store_true", help="papermill's own cell-by-cell progress instead of one "
                                                             "line per step")
    run.add_argument("--baseline", metavar="RUN_DIR", help="compare the new run with this earlier run afterwards "
                                                             "(comparison.{zh,en}.md and .html in the new run)")
    run.add_argument("--fail-on-regression", action="store_true",
                     help="with --baseline: exit 1 when a metric is worse beyond noise (for CI)")
    run.add_argument("--noise-floor", metavar="FILE", help="margins per metric from benchmarks/noise_floor.py "
                       "(default: the floor the kit ships for the run's platform, else ±5 %%)")
    run.set_defaults(func=_cmd_run)

    compare = sub.add_parser("compare", help="what differs between runs and every metric both measured, with its "
                                             "change, 95 %% interval, test and verdict (each later run against the first)")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", help="where the comparison goes (default outputs/compare-<UTC time>/)")
    compare.add_argument("--noise-floor", metavar="FILE", help="margins per metric from benchmarks/noise_floor.py "
                       "(default: the floor the kit ships for the run's platform, else ±5 %%)")
    compare.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a metric is worse")
    compare.set_defaults(func=_cmd_compare)

    report = sub.add_parser("report", help="rebuild the report of a run directory (report.{zh,en}.md, report.html)")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--reference", help="compare with this run directory or reference file "
                                            "(default: the run's params report.reference)")
    report.set_defaults(func=_cmd_report)

    model = sub.add_parser("model", help="build the kit's own checkpoints (offline)")
    model.add_argument("what", choices=[b.command for b in BUILTIN.values()])
    model.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    model.add_argument("--force", action="store_true", help="rebuild even if the cached copy is intact")
    model.set_defaults(func=_cmd_model)

    data = sub.add_parser("data", help="datasets of a study's lm-eval tasks")
    data_sub = data.add_subparsers(dest="data_cmd", required=True)
    fetch = data_sub.add_parser("fetch", help="download tasks.datasets from ModelScope (pinned revisions) into "
                                              "tasks.data_dir; the tasks stage itself never downloads")
    fetch.add_argument("params", help="study YAML file")
    fetch.set_defaults(func=_cmd_data)

    env = sub.add_parser("env", help="print the environment capture for a study")
    env.add_argument("params")
    env.set_defaults(func=_cmd_env)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, which is our code for bad usage too
        return int(e.code or 0)
    try:
        return args.func(args)
    except ParamsError as err:
        print(f"studykit: {err}", file=sys.stderr)
        return 2
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
