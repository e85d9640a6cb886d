"""What a report compares with: a previous run directory, or a reference file of published numbers.

Both answer `entry(metric_id)` for the ids of studykit.schema.metrics (e.g. `serve.mean_ttft_ms`), so a
reference file is written in the names the results contract uses, and an id the contract does not know is an
error naming it. Reference file (YAML or JSON):

    title: what the numbers are
    source: where they were published (file, section)
    metrics:
      serve.mean_ttft_ms: {value: 878.21, unit: ms, note: "§5.4 Mean TTFT"}
      throughput.total_prompt_tokens: {value: 102400, inconsistent: "100 prompts x 128 tokens = 12,800"}
      latency.avg_latency: 1.516          # a bare number is fine too
    not_measurable:                       # published numbers no study can reproduce, and why
      "§5.2 Avg prompt throughput 88.3 tokens/s": not a vllm bench latency output

Every text (title, source, note, inconsistent, a not_measurable reason) is a string, shown in both languages, or
{zh: ..., en: ...}, each language's report showing its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from studykit.schema.metrics import by_id, UnknownMetric, metric
from studykit.report.model import Run, is_number, load_run

from studykit import KIT_ROOT


class ReferenceError(ValueError):
    pass


Text = dict[str, str]  # {"zh": ..., "en": ...}


def _text(ref: str, where: str, raw) -> Text | None:
    """A reference text as {zh, en}: a plain string stands for both languages."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return {"zh": raw, "en": raw}
    if isinstance(raw, dict) and set(raw) == {"zh", "en"} and all(isinstance(v, str) for v in raw.values()):
        return dict(raw)
    raise ReferenceError(f"report.reference {ref!r}: {where} must be a string or {{zh: string, en: string}}, "
                         f"got {raw!r}")


def in_lang(text: Text | None, lang: str) -> str | None:
    return text[lang] if text else None


@dataclass
class RefEntry:
    value: float | int | None
    unit: str | None = None
    note: Text | None = None
    inconsistent: Text | None = None


@dataclass
class Reference:
    title: Text
    sources: Text
    metrics: dict[str, RefEntry] = field(default_factory=dict)
    run: Run | None = None
    config: dict[str, dict] = field(default_factory=dict)
    not_measurable: dict[str, Text] = field(default_factory=dict)
    platform: str | None = None

    @property
    def label(self) -> str:
        return self.title["en"]

    @property
    def source(self) -> str:
        return self.sources["en"]

    def stage_config(self, stage: str) -> dict | None:
        """The reference's parameters for a stage: the params its stage ran with (run) or the file's config
        entry."""
        if self.run is not None:
            return self.run.stage_params(stage) or None
        c = self.config.get(stage)
        return c if isinstance(c, dict) else None

    def entry(self, metric_id: str) -> RefEntry | None:
        m = metric(metric_id)
        if self.run is not None:
            st = self.run.stages.get(m.stage)
            v = st.value(m) if st else None
            return RefEntry(v, m.unit) if v is not None else None
        return self.metrics.get(metric_id)

    def value(self, metric_id: str):
        e = self.entry(metric_id)
        return e.value if e else None


def resolve_reference_path(ref: str, run_dir: Path | None = None) -> Path:
    raw = Path(ref).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw, KIT_ROOT / raw] + (
        [run_dir / raw] if run_dir else [])
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise ReferenceError(f"report.reference {ref!r} not found (looked in: {', '.join(str(c) for c in candidates)}); "
                         "allowed: a run directory (with run.json) or a reference file (.yaml/.yml/.json)")


def _entry(ref: str, key: str, raw) -> RefEntry:
    if is_number(raw):
        raw = {"value": raw}
    if not isinstance(raw, dict) or not is_number(raw.get("value")):
        raise ReferenceError(f"report.reference {ref!r}: metric {key!r} needs a number or "
                             f"{{value: number, unit, note, inconsistent}}, got {raw!r}")
    unknown = set(raw) - {"value", "unit", "note", "inconsistent"}
    if unknown:
        raise ReferenceError(f"report.reference {ref!r}: metric {key!r} has unknown field(s) {sorted(unknown)}; "
                             "allowed: value, unit, note, inconsistent")
    try:
        m = metric(str(key))
    except UnknownMetric as err:
        raise ReferenceError(f"report.reference {ref!r}: {err.args[0]}") from None
    if raw.get("unit") not in (None, m.unit):
        raise ReferenceError(f"report.reference {ref!r}: metric {key!r} has unit {raw['unit']!r}, but the study "
                             f"measures it in {m.unit!r}; convert the value")
    return RefEntry(raw["value"], raw.get("unit") or m.unit, _text(ref, f"metric {key!r} note", raw.get("note")),
                    _text(ref, f"metric {key!r} inconsistent", raw.get("inconsistent")))


def load_reference(ref: str, run_dir: Path | None = None) -> Reference:
    path = resolve_reference_path(ref, run_dir)
    if path.is_dir():
        if not (path / "run.json").exists() and not (path / "results").is_dir():
            raise ReferenceError(f"report.reference {ref!r} is a directory but not a run directory "
                                 "(no run.json or results/)")
        run = load_run(path)
        return Reference(title=_text(ref, "title", f"{run.name} @ {path.name}"), sources=_text(ref, "source", str(path)),
                         run=run, platform=run.study.get("platform"))
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
                             f"(metric id → number or {{value, unit, note}}); metric ids: {', '.join(by_id())}")
    metrics = {str(k): _entry(ref, str(k), v) for k, v in data["metrics"].items()}
    nm = data.get("not_measurable") or {}
    reasons = {str(k): _text(ref, f"not_measurable {k!r}", v) for k, v in nm.items()} if isinstance(nm, dict) else None
    if reasons is None or not all(v and all(t.strip() for t in v.values()) for v in reasons.values()):
        raise ReferenceError(f"report.reference {ref!r}: 'not_measurable' maps each published number to the "
                             "reason no study can measure it (a non-empty string, or {zh, en})")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    return Reference(title=_text(ref, "title", data.get("title") or path.name),
                     sources=_text(ref, "source", data.get("source") or str(path)), metrics=metrics, config=config,
                     not_measurable=reasons, platform=data.get("platform"))
