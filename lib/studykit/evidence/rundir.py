"""Run-directory layout and atomic JSON I/O. Nothing already written is ever rewritten in place."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from studykit import KIT_ROOT
from studykit.evidence.redact import redact_data, redact_text


class RunLayout:
    """Paths inside one run directory `outputs/<study>/<UTC time>/`."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir)

    params = property(lambda self: self.root / "params.yaml")
    run_json = property(lambda self: self.root / "run.json")
    commands = property(lambda self: self.root / "commands.jsonl")
    results = property(lambda self: self.root / "results")
    notebooks = property(lambda self: self.root / "notebooks")
    raw = property(lambda self: self.root / "raw")
    logs = property(lambda self: self.root / "logs")
    charts = property(lambda self: self.root / "charts")
    pids = property(lambda self: self.root / "pids")

    def result(self, stage: str) -> Path:
        return self.results / f"{stage}.json"

    def idle_power(self) -> Path | None:
        """The idle power the runner measured before any engine started: results/idle_power.json, or the newest
        results/idle_power.resume-<UTC>.json when a resume measured it again (None: never measured)."""
        found = sorted(self.results.glob("idle_power*.json"))  # "idle_power.json" sorts before ".resume-..."
        return found[-1] if found else None

    def raw_dir(self, stage: str) -> Path:
        """The stage's raw outputs. Only the path: a plan builds it under the RUN_DIR placeholder, where nothing
        may be created; whoever writes there makes the directory."""
        return self.raw / stage

    def make_dirs(self) -> None:
        for d in (self.results, self.notebooks, self.raw, self.logs, self.charts, self.pids):
            d.mkdir(parents=True, exist_ok=True)


def _jsonable(obj: Any) -> Any:
    # NaN/inf are not JSON; vLLM's own rate "inf" is kept as the string it prints.
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else ("-inf" if obj < 0 else None)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return _jsonable(obj.model_dump(mode="json"))
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return obj


def write_json(path: str | Path, data: Any) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a file. Secret values of the
    process environment are written as *** (studykit.evidence.redact), wherever they slipped in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(redact_data(_jsonable(data)), fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Like write_json: atomic, secrets of the process environment as ***."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(_redact_text_file(path, text), encoding="utf-8")
    tmp.replace(path)
    return path


def _redact_text_file(path: Path, text: str) -> str:
    redacted = redact_text(text)
    if redacted == text or path.suffix not in (".yaml", ".yml"):
        return redacted
    # A bare *** is a YAML alias: mask the parsed values instead, so the file stays loadable.
    import yaml

    return yaml.safe_dump(redact_data(yaml.safe_load(text)), sort_keys=False, allow_unicode=True)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def outputs_root() -> Path:
    return Path(os.environ.get("STUDYKIT_OUTPUTS", KIT_ROOT / "outputs"))


def new_run_dir(study, root: Path | None = None) -> Path:
    """`<outputs>/<study>/<UTC time>/`, never an existing one."""
    base = (root or outputs_root()) / study.name
    base.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp()
    for n in range(1, 1000):
        candidate = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        RunLayout(candidate).make_dirs()
        return candidate
    raise RuntimeError(f"could not make a new run directory under {base}")
