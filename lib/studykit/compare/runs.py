"""Compare two runs: what differs, every metric both measured, the verdicts; written beside the runs or where
asked. `studykit compare RUN_A RUN_B [RUN_C ...]` compares each later run with the first."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from studykit.compare import render
from studykit.compare.differ import probe_ratio, what_differs
from studykit.compare.samples import run_metrics
from studykit.compare.statistics import Change, compare_metric, settle


def load_noise_floor(path: str | Path | None) -> dict[str, float]:
    """metric key (or family prefix) -> margin, from benchmarks/noise_floor.py's output (JSON)."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: float(v["margin"]) for k, v in (data.get("metrics") or {}).items()}


def _margin(key: str, floor: dict[str, float]) -> float | None:
    if key in floor:
        return floor[key]
    family = key.split("[", 1)[0].split(".", 1)[0]
    return floor.get(family)


def compare_runs(a: str | Path, b: str | Path, noise_floor: dict[str, float] | None = None) -> dict:
    a, b = Path(a).resolve(), Path(b).resolve()
    ma, mb = run_metrics(a), run_metrics(b)
    floor = noise_floor or {}
    changes: list[Change] = []
    for key in [k for k in ma if k in mb]:
        changes.append(compare_metric(ma[key], mb[key], margin=_margin(key, floor)))
    settle(changes, {k: m.lower_is_better for k, m in ma.items()})
    for c in changes:
        ratio = probe_ratio(a, b, c.probe) if c.probe and c.change is not None and c.relative else None
        if ratio:
            # A machine with a faster probe should shorten times and raise rates by that ratio.
            c.normalised = (c.change + 1) * ratio - 1 if ma[c.key].lower_is_better else (c.change + 1) / ratio - 1
    only = {"only in A": sorted(set(ma) - set(mb)), "only in B": sorted(set(mb) - set(ma))}
    return {"a": str(a), "b": str(b), "differs": what_differs(a, b), "changes": changes, "only": only}


def write_comparison(result: dict, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [result["a"], result["b"]]
    texts = {lang: render.markdown(runs, result["differs"], result["changes"], lang) for lang in ("zh", "en")}
    paths = {}
    for lang, text in texts.items():
        paths[f"comparison.{lang}.md"] = out / f"comparison.{lang}.md"
        paths[f"comparison.{lang}.md"].write_text(text, encoding="utf-8")
    paths["comparison.html"] = out / "comparison.html"
    paths["comparison.html"].write_text(render.to_html(texts, "studykit comparison"), encoding="utf-8")
    paths["comparison.json"] = out / "comparison.json"
    paths["comparison.json"].write_text(json.dumps(
        {**{k: v for k, v in result.items() if k != "changes"}, "changes": [asdict(c) for c in result["changes"]]},
        indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return paths


def regressions(result: dict) -> list[Change]:
    return [c for c in result["changes"] if c.verdict == "worse"]
