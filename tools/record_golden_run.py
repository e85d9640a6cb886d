"""Record the golden runs the report tests read: real runs of the kit, trimmed to a portable copy.

    .venv/bin/python tools/record_golden_run.py            # run both studies now (about 8 minutes on 2 cores)
    .venv/bin/python tools/record_golden_run.py --from RUN_DIR [--failed-from RUN_DIR]   # copy existing runs

tests/data/runs/golden/         the default study (params/smollm2-135m-cpu.yaml), every stage, reference: seed
tests/data/runs/golden-failed/  the same model with a stage that errors (latency with a flag vLLM rejects), a
                                stage whose check fails (accuracy with max_mean_kl 0), and serve with repeats 2
                                (mean and 95 % CI per point): real failures, real data

What is kept: params.yaml, run.json, commands.jsonl, results/, raw/ (bench JSON, lm-eval logs), logs/, charts/;
the executed notebooks and the reference's full-vocabulary log-probabilities (raw/accuracy/*.npz, tens of MB) are
left out. The checkpoint is reduced to config.json, the manifest and each safetensors file's
header (what the report reads to describe the model), under model/. Absolute paths of the run directory become
relative, and the model directory in results becomes `model`; commands.jsonl keeps the command lines exactly as
they ran, and golden.json records the original run and model directories so tests can normalise them.
Commit the result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "runs"
DEFAULT = ROOT / "params" / "smollm2-135m-cpu.yaml"
KEEP = ("params.yaml", "run.json", "commands.jsonl", "results", "raw", "logs", "charts")


def failing_study(tmp: Path) -> Path:
    data = yaml.safe_load(DEFAULT.read_text())
    data.update(name="smollm2-135m-cpu-failing", stages=["latency", "serve", "accuracy", "report"])
    data["latency"] = {**data.get("latency", {}), "extra_args": ["--no-such-flag"]}
    data["serve"] = {**data.get("serve", {}), "request_rates": [float("inf")], "num_prompts": 10, "repeats": 2}
    data["accuracy"] = {**data.get("accuracy", {}), "max_mean_kl": 0.0}
    path = tmp / "failing.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def run(params: Path, outputs: Path) -> Path:
    proc = subprocess.run([sys.executable, "-m", "studykit.runner.cli", "run", str(params)], cwd=ROOT, text=True,
                          capture_output=True, env={**__import__("os").environ, "STUDYKIT_OUTPUTS": str(outputs)})
    print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    runs = sorted(outputs.glob("*/*/run.json"))
    if not runs:
        raise SystemExit(f"no run directory under {outputs}")
    return runs[-1].parent


def header_only(src: Path, dst: Path) -> None:
    with open(src, "rb") as fh:
        head = fh.read(8)
        (n,) = struct.unpack("<Q", head)
        dst.write_bytes(head + fh.read(n))


def copy_run(run_dir: Path, dest: Path) -> None:
    run_dir = run_dir.resolve()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in KEEP:
        src = run_dir / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("*.tmp", ".*", "*.npz"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    model_dir = None
    for res in sorted((dest / "results").glob("*.json")):
        model_dir = model_dir or json.loads(res.read_text()).get("model_dir")
    if model_dir is None:
        model_dir = next((json.loads(line).get("extra", {}).get("model_dir") for line in
                          (dest / "commands.jsonl").read_text().splitlines() if "model_dir" in line), None)
    if model_dir and Path(model_dir).is_dir():
        (dest / "model").mkdir()
        for f in Path(model_dir).iterdir():
            if f.suffix == ".safetensors":
                header_only(f, dest / "model" / f.name)
            elif f.name in ("config.json", "studykit-manifest.json", "generation_config.json"):
                shutil.copy2(f, dest / "model" / f.name)
    prefix = str(run_dir) + "/"
    for path in [*(dest / "results").glob("*.json"), dest / "run.json", dest / "commands.jsonl"]:
        text = path.read_text(encoding="utf-8").replace(prefix, "").replace(str(run_dir), ".")
        if path.parent.name == "results" and model_dir:
            text = text.replace(json.dumps(model_dir), json.dumps("model"))
        path.write_text(text, encoding="utf-8")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    (dest / "golden.json").write_text(json.dumps({
        "recorded_from": str(run_dir), "model_dir": model_dir, "kit_commit": commit,
        "how": "tools/record_golden_run.py"}, indent=2) + "\n")
    print(f"{dest}: {sum(f.stat().st_size for f in dest.rglob('*') if f.is_file()) / 1e6:.1f} MB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="from_run", help="copy this run directory instead of running the default study")
    ap.add_argument("--failed-from", help="copy this run directory as golden-failed instead of running it")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = Path(args.from_run) if args.from_run else run(DEFAULT, tmp / "outputs")
        bad = Path(args.failed_from) if args.failed_from else (
            None if args.from_run else run(failing_study(tmp), tmp / "outputs"))
        copy_run(good, OUT / "golden")
        if bad is not None:
            copy_run(bad, OUT / "golden-failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
