"""Compare two runs: what differs, every metric both measured, the verdicts; written beside the runs or where
asked. `studykit compare RUN_A RUN_B [RUN_C ...]` compares each later run with the first."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from studykit.compare import render
from studykit.compare.differ import probe_ratio, run_params, what_differs
from studykit.compare.samples import run_metrics
from studykit.compare.statistics import Change, compare_metric, settle

SHIPPED_FLOORS = Path(__file__).resolve().parents[1] / "data"


@dataclass
class NoiseFloor:
    """Margins per metric key (or `<stage>.<metric>` without the serve point, or the stage alone) and where they
    were measured."""

    margins: dict[str, float]
    source: str

    @classmethod
    def of(cls, metrics: dict[str, dict], source: str) -> NoiseFloor:
        """From the `metrics` block benchmarks/noise_floor.py writes (key -> {"margin": ..., ...})."""
        return cls({k: float(v["margin"]) for k, v in metrics.items()}, source)


def without_point(key: str) -> str:
    """`serve[rate=inf].mean_tpot_ms` -> `serve.mean_tpot_ms`: the metric whatever the serve point."""
    return re.sub(r"\[[^]]*\]", "", key)


def load_noise_floor(path: str | Path | None) -> NoiseFloor | None:
    """benchmarks/noise_floor.py's output (JSON), or None without a path."""
    if not path:
        return None
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    about = data.get("measured") or {}
    where = ", ".join(str(about[k]) for k in ("runs", "host", "utc", "commit") if about.get(k))
    return NoiseFloor.of(data.get("metrics") or {}, f"{path}" + (f" ({where})" if where else ""))


def shipped_noise_floor(run_dir: str | Path) -> NoiseFloor | None:
    """The floor the kit ships for the run's platform (lib/studykit/data/noise-floor-<platform>.json), measured by
    benchmarks/noise_floor.py on the default study; None where none is shipped (then the flat defaults apply)."""
    platform = run_params(Path(run_dir)).get("platform")
    path = SHIPPED_FLOORS / f"noise-floor-{platform}.json"
    return load_noise_floor(path) if platform and path.exists() else None


def _margin(key: str, floor: dict[str, float]) -> float | None:
    # a serve point the floor did not measure takes the largest margin of that metric over the measured points
    pointless = without_point(key)
    for candidate in (key, pointless, pointless.split(".", 1)[0]):
        if candidate in floor:
            return floor[candidate]
    return None


def compare_runs(a: str | Path, b: str | Path, noise_floor: NoiseFloor | None = None) -> dict:
    """noise_floor None: the floor shipped for run A's platform; `NoiseFloor({}, ...)`: the flat defaults."""
    a, b = Path(a).resolve(), Path(b).resolve()
    ma, mb = run_metrics(a), run_metrics(b)
    floor = noise_floor if noise_floor is not None else shipped_noise_floor(a)
    margins = floor.margins if floor else {}
    changes: list[Change] = []
    for key in [k for k in ma if k in mb]:
        changes.append(compare_metric(ma[key], mb[key], margin=_margin(key, margins)))
    settle(changes, {k: m.lower_is_better for k, m in ma.items()})
    for c in changes:
        ratio = probe_ratio(a, b, c.probe) if c.probe and c.change is not None and c.relative else None
        if ratio:
            # A machine with a faster probe should shorten times and raise rates by that ratio.
            c.normalised = (c.change + 1) * ratio - 1 if ma[c.key].lower_is_better else (c.change + 1) / ratio - 1
    only = {"only in A": sorted(set(ma) - set(mb)), "only in B": sorted(set(mb) - set(ma))}
    return {"a": str(a), "b": str(b), "differs": what_differs(a, b), "changes": changes, "only": only,
            "noise_floor": floor.source if floor and floor.margins else None}


def write_comparison(result: dict, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [result["a"], result["b"]]
    texts = {lang: render.markdown(runs, result["differs"], result["changes"], lang, result.get("noise_floor"))
             for lang in ("zh", "en")}
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
