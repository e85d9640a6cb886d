"""Building blocks the sections share: the section context, stage banners, metric and sweep tables.

Tables look numbers up by their path in results/<stage>.json and print them as they are (rounded for
reading); a failing check that names a path puts ❌ next to that number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .i18n import S, metric_label, metric_unit, t
from .mdtools import DASH, Md, fmt, fmt_delta
from .model import Run, is_number
from .reference import Reference

# Bookkeeping keys every result has; they are not measurements of the stage.
BOOKKEEPING = {"stage", "study", "status", "failures", "started_utc", "ended_utc", "error", "traceback", "checks",
               "charts", "commands", "command", "model_dir", "params", "log", "logs", "raw", "notes", "wall_seconds"}

# Preferred order of the summary metrics per stage (vLLM's result names); other numbers follow after.
PREFERRED = {
    "latency": ["avg_latency", "avg_latency_s", "percentiles.10", "percentiles.25", "percentiles.50",
                "percentiles.75", "percentiles.90", "percentiles.99"],
    "throughput": ["requests_per_second", "tokens_per_second", "output_tokens_per_s", "output_tokens_per_second",
                   "num_requests", "total_num_tokens", "total_input_tokens", "total_output_tokens", "elapsed_time"],
    "serve": ["request_throughput", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
              "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
              "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "completed", "failed",
              "total_input_tokens", "total_output_tokens", "duration"],
    "accuracy": ["summary.prompts", "summary.tokens_per_prompt", "summary.token_agreement", "summary.prob_mae",
                 "summary.prob_max_error", "teacher_forced.top1_agreement", "teacher_forced.mean_kl",
                 "teacher_forced.max_kl", "teacher_forced.mean_topk_overlap",
                 "teacher_forced.ref_token_outside_cand_topk"],
    "functional": ["prefix_caching.hit_rate", "prefix_caching.hit_tokens", "prefix_caching.query_tokens",
                   "prefix_caching.expected_hit_tokens", "prefix_caching.block_size",
                   "chunked_prefill.prompt_tokens", "chunked_prefill.max_num_batched_tokens"],
}


@dataclass
class Ctx:
    run: Run
    lang: str
    model: dict
    ref: Reference | None = None
    ref_error: str | None = None
    adaptation: dict | None = None
    warnings: list[dict] | None = None
    md: Md = field(default_factory=Md)

    def t(self, key: str, **kw) -> str:
        return t(key, self.lang, **kw)

    @property
    def marks(self) -> dict[tuple[str, str], list[str]]:
        """(stage, result path) → names of failing checks that concern that number."""
        out: dict[tuple[str, str], list[str]] = {}
        for st in self.run.stages.values():
            for c in st.checks:
                if c.get("passed") is False:
                    for path in check_paths(c) or named_path(c, st.result):
                        out.setdefault((st.name, path), []).append(str(c.get("name")))
        return out


def named_path(check: dict, result: dict | None) -> list[str]:
    """For a check that names no key: the first result number whose name its own name mentions."""
    name = str(check.get("name") or "")
    hits = [(m.start(), path) for path in numeric_paths(result)
            for m in [re.search(rf"(?<![\w.]){re.escape(path)}(?![\w])", name)] if m]
    return [min(hits)[1]] if hits else []


def check_paths(check: dict) -> list[str]:
    """Result keys a check is about: its "metric"/"metrics"/"keys"/"fields"/"key" entries, if any."""
    paths = []
    for key in ("metric", "key", "field", "metrics", "keys", "fields"):
        v = check.get(key)
        if isinstance(v, str):
            paths.append(v)
        elif isinstance(v, list):
            paths += [str(x) for x in v if isinstance(x, (str, int))]
    return paths


# ---------------------------------------------------------------- helpers

def status_text(ctx: Ctx, status: str) -> str:
    key = f"status_{status}"
    return ctx.t(key) if key in S else status


def stage_banner(ctx: Ctx, stage: str) -> bool:
    """Say when a stage failed or did not run. True when there are results to show."""
    st = ctx.run.stages[stage]
    if st.status == "not run" and st.result is None:
        ctx.md.p(ctx.t("stage_skipped" if st.requested else "stage_not_run", stage=stage))
        return False
    if st.status == "failed":
        ctx.md.p(ctx.t("stage_failed", stage=stage, error=""))
        ctx.md.code(st.error or DASH, "text")
    elif st.status not in ("passed",):
        err = f": {st.error}" if st.error else ""
        ctx.md.p(ctx.t("stage_not_finished", stage=stage, status=st.status, error=err))
    if st.result is None:
        ctx.md.p(ctx.t("stage_no_results", stage=stage))
        return False
    if st.status != "passed":
        ctx.md.p(ctx.t("partial_results"))
    return True


def value_cell(ctx: Ctx, stage: str, path: str, value: Any) -> str:
    text = fmt(value)
    failing = ctx.marks.get((stage, path))
    if failing:
        text += " ❌ (" + "; ".join(ctx.t("x_marked", name=n) for n in failing) + ")"
    return text


def metrics_table(ctx: Ctx, stage: str, paths: list[str], *, keep_missing: bool = True,
                  labels: dict[str, str] | None = None) -> int:
    """Table of result numbers by path, with reference and delta columns when comparing. Returns rows written."""
    st = ctx.run.stages[stage]
    headers = [ctx.t("col_metric"), ctx.t("col_value"), ctx.t("col_unit")]
    if ctx.ref:
        headers += [ctx.t("col_reference"), ctx.t("col_delta")]
    rows = []
    for path in paths:
        v = st.get(path)
        if v is None and not keep_missing:
            continue
        label = (labels or {}).get(path) or metric_label(path, ctx.lang)
        row = [label, value_cell(ctx, stage, path, v), metric_unit(path) or (unit_hint(path) or "")]
        if ctx.ref:
            mid = f"{stage}.{path}"
            ref = ctx.ref.value(mid)
            ref_unit = ctx.ref.unit(mid)
            ours = row[2]
            if ref is not None and ref_unit and ours and ref_unit != ours:
                row += [f"{fmt(ref)} {ref_unit}", DASH]
            else:
                row += [fmt(ref), fmt_delta(v, ref)]
        rows.append(row)
    ctx.md.table(headers, rows)
    return len(rows)


def unit_hint(path: str) -> str | None:
    # vllm bench latency's percentiles are seconds, keyed by the percentage.
    if path.startswith("percentiles."):
        return "s"
    return None


def numeric_paths(result: dict | None, prefix: str = "", depth: int = 2) -> list[str]:
    """Dotted paths of the numbers in a result (dicts only, lists are sweeps/raw data), bookkeeping left out."""
    out = []
    if not isinstance(result, dict):
        return out
    for k, v in result.items():
        if not prefix and k in BOOKKEEPING:
            continue
        path = f"{prefix}{k}"
        if is_number(v):
            out.append(path)
        elif isinstance(v, dict) and depth > 1:
            out += numeric_paths(v, path + ".", depth - 1)
    return out


def ordered_paths(stage: str, result: dict | None) -> list[str]:
    found = numeric_paths(result)
    preferred = [p for p in PREFERRED.get(stage, []) if p in found]
    return preferred + [p for p in found if p not in preferred]


def sweep_lists(result: dict | None) -> dict[str, list[dict]]:
    """Top-level lists of records (one per sweep point / repeat) in a result."""
    out = {}
    if not isinstance(result, dict):
        return out
    for k, v in result.items():
        if k in BOOKKEEPING or not isinstance(v, list) or not v:
            continue
        # A sweep table shows top-level numbers of each point; lists without any (e.g. telemetry series) are not sweeps.
        if all(isinstance(x, dict) for x in v) and any(numeric_paths(x, depth=1) for x in v):
            out[k] = v
    return out


def sweep_table(ctx: Ctx, stage: str, key: str, points: list[dict], max_cols: int = 10) -> None:
    cols: list[str] = []
    for p in points:
        for path in numeric_paths(p, depth=1):
            if path not in cols:
                cols.append(path)
    pref = [c for c in PREFERRED.get(stage, []) if c in cols]
    ident = [c for c in cols if c in ("request_rate", "max_concurrency", "concurrency", "batch_size", "input_len",
                                      "output_len", "repeat", "num_prompts")]
    cols = ident + pref + [c for c in cols if c not in pref and c not in ident]
    cols = cols[:max_cols]
    label_cols = [k for k in ("label", "name", "point", "id") if any(isinstance(p.get(k), str) for p in points)][:1]
    headers = [ctx.t("col_point")] + [f"{metric_label(c, ctx.lang)}" + (f" ({metric_unit(c)})" if metric_unit(c) else "")
                                      for c in cols]
    rows = []
    for i, p in enumerate(points):
        name = p.get(label_cols[0]) if label_cols else str(i + 1)
        rows.append([name] + [value_cell(ctx, stage, f"{key}.{i}.{c}", p.get(c)) for c in cols])
    ctx.md.table(headers, rows)


def stage_charts(ctx: Ctx, stage: str) -> list[str]:
    """Charts of a stage: those its result lists, else charts/<stage>-*.png in the run directory."""
    st = ctx.run.stages[stage]
    listed = st.get("charts")
    paths: list[str] = []
    if isinstance(listed, dict):
        listed = list(listed.values())
    if isinstance(listed, list):
        for c in listed:
            c = c.get("path") if isinstance(c, dict) else c
            if isinstance(c, str):
                p = Path(c)
                rel = p.relative_to(ctx.run.root) if p.is_absolute() and p.is_relative_to(ctx.run.root) else p
                paths.append(str(rel))
    if not paths:
        paths = [str(p.relative_to(ctx.run.root)) for p in sorted((ctx.run.root / "charts").glob(f"{stage}-*.png"))]
    return [p for p in paths if (ctx.run.root / p).is_file()]


def show_charts(ctx: Ctx, stage: str) -> None:
    for rel in stage_charts(ctx, stage):
        ctx.md.image(rel, Path(rel).stem)


def stage_vllm_commands(ctx: Ctx, stage: str) -> list[str]:
    return [c["command"] for c in sorted(ctx.run.stage_commands(stage), key=lambda c: c.get("started_utc") or "")
            if c.get("command") and c.get("is_vllm")]


def params_table(ctx: Ctx, stage: str) -> None:
    block = ctx.run.params(stage)
    rows = [[k, fmt(v) if not isinstance(v, str) else v] for k, v in block.items()
            if not isinstance(v, (dict,)) and v not in (None, [], "")]
    ctx.md.table([ctx.t("col_item"), ctx.t("col_value")], rows)


def check_status(ctx: Ctx, passed) -> str:
    return ctx.t("status_passed") if passed is True else (ctx.t("status_failed") if passed is False else DASH)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, list) or all(not isinstance(x, (dict, list)) for x in v):
            out[f"{prefix}{k}"] = v
    return out
