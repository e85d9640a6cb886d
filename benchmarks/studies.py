"""What the benchmarks share: the default study with a changed name and extra vLLM environment, run for some of
its stages through the real CLI (`studykit run`), as a researcher would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = ROOT / "params" / "smollm2-135m-cpu.yaml"


def study_variant(tmp: Path, suffix: str | None, env: dict[str, str] | None = None,
                  params: Path = DEFAULT_PARAMS) -> Path:
    """A copy of the study file in tmp, named `<name>-<suffix>`, with `env` added to server.env (every vLLM
    process the study starts gets server.env)."""
    data = yaml.safe_load(params.read_text())
    if suffix:
        data["name"] = f"{data['name']}-{suffix}".replace("_", "-").replace(",", "-").replace("=", "-")
    if env:
        data.setdefault("server", {}).setdefault("env", {}).update(env)
    path = tmp / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_stages(params: Path, stages: str, outputs: Path | None = None) -> tuple[int, Path | None, str]:
    """`studykit run PARAMS --stages STAGES`: (exit code, the run directory it printed, its output's tail)."""
    env = {**os.environ, **({"STUDYKIT_OUTPUTS": str(outputs)} if outputs else {})}
    proc = subprocess.run([sys.executable, "-m", "studykit.runner.cli", "run", str(params), "--stages", stages],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    found = [line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("run directory:")]
    return proc.returncode, (Path(found[-1]) if found else None), proc.stdout[-3000:] + proc.stderr[-3000:]
