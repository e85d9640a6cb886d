"""What a report compares with: a previous run directory, or a reference file of published numbers.

Both answer `value(metric_id)` where a metric id is `<stage>.<path in results/<stage>.json>`
(e.g. `serve.mean_ttft_ms`), so a reference file is written in the same names the results use.
Reference file (YAML or JSON):

    title: what the numbers are
    source: where they were published (file, section)
    metrics:
      serve.mean_ttft_ms: {value: 878.21, unit: ms, note: "§5.4 Mean TTFT"}
      latency.avg_latency: 1.516          # a bare number is fine too
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model import Run, dig, is_number, load_run

KIT_ROOT = Path(__file__).resolve().parents[3]


class ReferenceError(ValueError):
    pass


@dataclass
class Reference:
    label: str
    source: str
    metrics: dict[str, dict] = field(default_factory=dict)
    run: Run | None = None
    config: dict[str, dict] = field(default_factory=dict)

    def stage_config(self, stage: str) -> dict | None:
        """The reference's parameters for a stage: its params block (run) or the file's config entry."""
        if self.run is not None:
            return self.run.params(stage) or None
        c = self.config.get(stage)
        return c if isinstance(c, dict) else None

    def value(self, metric_id: str) -> Any:
        if self.run is not None:
            stage, _, path = metric_id.partition(".")
            st = self.run.stages.get(stage)
            v = dig(st.result, path) if st else None
            return v if is_number(v) else None
        entry = self.metrics.get(metric_id)
        return entry.get("value") if entry else None

    def unit(self, metric_id: str) -> str | None:
        entry = self.metrics.get(metric_id)
        return entry.get("unit") if entry else None

    def note(self, metric_id: str) -> str | None:
        entry = self.metrics.get(metric_id)
        return entry.get("note") if entry else None


def resolve_reference_path(ref: str, run_dir: Path | None = None) -> Path:
    raw = Path(ref).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, KIT_ROOT / raw] + (
        [run_dir / raw] if run_dir else [])
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise ReferenceError(f"report.reference {ref!r} not found (looked in: {', '.join(str(c) for c in candidates)}); "
                         "allowed: a run directory (with run.json) or a reference file (.yaml/.yml/.json)")


def load_reference(ref: str, run_dir: Path | None = None) -> Reference:
    path = resolve_reference_path(ref, run_dir)
    if path.is_dir():
        if not (path / "run.json").exists() and not (path / "results").is_dir():
            raise ReferenceError(f"report.reference {ref!r} is a directory but not a run directory "
                                 "(no run.json or results/)")
        run = load_run(path)
        return Reference(label=f"{run.name} @ {path.name}", source=str(path), run=run)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ReferenceError(f"report.reference {ref!r}: unsupported file type {path.suffix!r}; "
                             "allowed: .yaml, .yml, .json or a run directory")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ReferenceError(f"report.reference {ref!r} is not readable: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ReferenceError(f"report.reference {ref!r} needs a mapping with a 'metrics' mapping "
                             "(metric id → number or {value, unit, note})")
    metrics = {}
    for key, entry in data["metrics"].items():
        if is_number(entry):
            entry = {"value": entry}
        if not isinstance(entry, dict) or not is_number(entry.get("value")):
            raise ReferenceError(f"report.reference {ref!r}: metric {key!r} needs a number or "
                                 f"{{value: number, unit, note}}, got {entry!r}")
        if "." not in str(key):
            raise ReferenceError(f"report.reference {ref!r}: metric id {key!r} must be '<stage>.<result key>'")
        metrics[str(key)] = entry
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    return Reference(label=str(data.get("title") or path.name), source=str(data.get("source") or path),
                     metrics=metrics, config=config)
