"""Building blocks the sections share: the section context, stage banners, metric and sweep tables.

Tables show the numbers named in studykit.schema.metrics (one table of ids, labels, units, paths): the report
guesses no key. A failing check that names a metric id is named in brackets after that number; derived numbers
carry †. Checks are picked by their `id` (and `metric`), never by the words of their name, and shown in the
reader's language (report.check_text). Status is a word (report.html colours it), never an emoji.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studykit.schema.metrics import Metric, stage_metrics
from studykit.report.check_text import check_detail, check_label, check_name, check_subject, zh_detail
from studykit.report.i18n import S, t
from studykit.report.mdtools import DASH, Md, fmt, fmt_delta, inline_code
from studykit.report.model import Run
from studykit.report.reference import Reference, in_lang

DERIVED_MARK = "†"


@dataclass(frozen=True)
class SummaryRow:
    """One row of the report's summary, declared by the stage it belongs to (its section.py SUMMARY):
    `key` the i18n label, `metrics` the headline metric ids, `check` the id of the check the row stands for
    (None: the whole stage), `figures(ctx)` when the headline is not a list of metrics."""

    key: str
    metrics: tuple[str, ...] = ()
    check: str | None = None
    figures: Any = None


@dataclass
class Ctx:
    run: Run
    lang: str
    model: dict
    ref: Reference | None = None
    ref_error: str | None = None
    adaptation: dict | None = None
    warnings: list[dict] | None = None
    startup: list[dict] = field(default_factory=list)
    md: Md = field(default_factory=Md)

    def t(self, key: str, **kw) -> str:
        return t(key, self.lang, **kw)

    @property
    def marks(self) -> dict[str, list[str]]:
        """metric id → names (what a reader sees) of the failing checks whose `metric` is that id."""
        out: dict[str, list[str]] = {}
        for st in self.run.stages.values():
            for c in st.checks:
                if c.status == "failed" and c.metric:
                    out.setdefault(c.metric, []).append(check_label(c, self.lang))
        return out


# ---------------------------------------------------------------- helpers

def status_text(ctx: Ctx, status: str) -> str:
    key = f"status_{status}"
    return ctx.t(key) if key in S else status


CHECK_FAILED = "check failed: "  # how studykit.checks.failed words a failed check in a stage's error


def stage_error(ctx: Ctx, stage: str) -> str:
    """A stage's error as the reader's language allows: in zh, the failed-check part (the recorded English names)
    is replaced by the failed checks of its result, picked by status and named by id; the rest is kept verbatim."""
    st = ctx.run.stages[stage]
    err = st.error or ""
    at = err.find(CHECK_FAILED)
    if ctx.lang == "en" or at < 0 or st.result is None:
        return err
    failed = [f"{check_label(c, ctx.lang)}: {check_detail(c, ctx.lang)}" for c in st.checks if c.status == "failed"]
    before = err[:at].rstrip("; \n")
    return "\n".join(([before] if before else []) + [ctx.t("k_check_issue", name=f) for f in failed])


def stage_banner(ctx: Ctx, stage: str) -> bool:
    """Say when a stage failed, did not run or wrote results the report cannot read. True when there are
    results to show."""
    st = ctx.run.stages[stage]
    if st.unreadable:
        ctx.md.p(ctx.t("stage_unreadable", stage=stage))
        if st.error:
            ctx.md.code(st.error, "text")
        return False
    if st.status == "not run" and st.result is None:
        ctx.md.p(ctx.t("stage_skipped" if st.requested else "stage_not_run", stage=stage))
        return False
    if st.status == "failed":
        ctx.md.p(ctx.t("stage_failed", stage=stage, error=""))
        ctx.md.code(stage_error(ctx, stage) or DASH, "text")
    elif st.status not in ("passed",):
        err = f": {stage_error(ctx, stage)}" if st.error else ""
        ctx.md.p(ctx.t("stage_not_finished", stage=stage, status=st.status, error=err))
    if st.result is None:
        ctx.md.p(ctx.t("stage_no_results", stage=stage))
        return False
    if st.status != "passed":
        ctx.md.p(ctx.t("partial_results"))
    return True


def value_cell(ctx: Ctx, metric_id: str | None, value: Any) -> str:
    text = fmt(value)
    failing = ctx.marks.get(metric_id) if metric_id else None
    if failing:
        text += f" [{ctx.t('x_marked', names='; '.join(failing))}]"
    return text


def metric_label(m: Metric, lang: str) -> str:
    return (m.zh if lang == "zh" else m.en) + (f" {DERIVED_MARK}" if m.source == "derived" else "")


def metrics_table(ctx: Ctx, metrics: list[Metric]) -> int:
    """One row per metric: value, unit, and with a reference its value, delta and note. Returns rows written."""
    headers = [ctx.t("col_metric"), ctx.t("col_value"), ctx.t("col_unit")]
    if ctx.ref:
        headers += [ctx.t("col_reference"), ctx.t("col_delta"), ctx.t("col_note")]
    rows = []
    for m in metrics:
        v = ctx.run.stages[m.stage].value(m)
        row = [metric_label(m, ctx.lang), value_cell(ctx, m.id, v), m.unit]
        if ctx.ref:
            entry = ctx.ref.entry(m.id)
            ref = entry.value if entry else None
            note = ""
            if entry and entry.inconsistent:
                note = "⚠ " + ctx.t("ref_inconsistent", why=in_lang(entry.inconsistent, ctx.lang))
            elif entry and entry.note:
                note = in_lang(entry.note, ctx.lang)
            row += [fmt(ref), fmt_delta(v, ref), note]
        rows.append(row)
    if any(m.source == "derived" for m in metrics):
        ctx.md.table(headers, rows)
        ctx.md.p(f"{DERIVED_MARK} " + ctx.t("derived_note") + " " + "; ".join(
            f"{metric_label(m, ctx.lang).rstrip(' ' + DERIVED_MARK)} = {m.how}" for m in metrics
            if m.source == "derived" and m.how))
    else:
        ctx.md.table(headers, rows)
    return len(rows)


def point_label(ctx: Ctx, point) -> str:
    """A serve sweep point (ServePoint, or a roofline point: both carry request_rate and max_concurrency)."""
    conc = point.max_concurrency
    return ctx.t("point_label", rate=point.request_rate, conc=conc if conc else ctx.t("unlimited"))


def stage_charts(ctx: Ctx, stage: str) -> list[str]:
    """Charts of a stage: those its result lists, else charts/<stage>-*.png in the run directory."""
    st = ctx.run.stages[stage]
    paths: list[str] = []
    for c in st.result.charts if st.result is not None else []:
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
    """The params the stage ran with (stored with its result; params.yaml's block when it stored none)."""
    block = ctx.run.stage_params(stage)
    rows = [[k, fmt(v) if not isinstance(v, str) else v] for k, v in block.items()
            if not isinstance(v, (dict,)) and v not in (None, [], "")]
    ctx.md.table([ctx.t("col_item"), ctx.t("col_value")], rows)


def check_status(ctx: Ctx, status: str | bool | None) -> str:
    """A check's or gate's status: passed / failed / not run (True/False for gates)."""
    if status is True or status == "passed":
        return ctx.t("status_passed")
    if status is False or status == "failed":
        return ctx.t("status_failed")
    if status == "not_run":
        return ctx.t("status_not run")
    return DASH


def perf_stage(ctx: Ctx, stage: str, title_key: str, before_table=None, after_table=None) -> None:
    """A performance stage's part of §5: its params (and the reference's), its vLLM commands, its metric table
    (roofline rows are §5.5's), then its charts; `before_table` / `after_table(ctx, result)` (the typed
    result) add what is the stage's own."""
    md = ctx.md
    md.h(3, ctx.t(title_key))
    st = ctx.run.stages[stage]
    if st.requested or st.ran:
        md.p(f"**{ctx.t('p_config')}**")
        params_table(ctx, stage)
        ref_config = ctx.ref.stage_config(stage) if ctx.ref else None
        if ref_config:
            shown = ", ".join(f"{k}={v}" for k, v in ref_config.items() if not isinstance(v, (dict, list)) or v)
            md.p(ctx.t("p_ref_config", config=inline_code(shown)))
    has = stage_banner(ctx, stage)
    cmds = stage_vllm_commands(ctx, stage)
    if cmds:
        md.p(ctx.t("p_commands"))
        md.code("\n".join(cmds))
    if not has:
        return
    # roofline rows are §5.5's; energy rows are the stage's energy table's (energy_table)
    numbers = [m for m in stage_metrics(stage) if not m.id.split(".", 1)[1].startswith("roofline")
               and not is_energy(m)]
    if numbers:
        if before_table:
            before_table(ctx, st.result)
        metrics_table(ctx, numbers)
    if after_table:
        after_table(ctx, st.result)
    show_charts(ctx, stage)


def is_energy(m: Metric) -> bool:
    return "energy" in m.path.split(".")


def energy_table(ctx: Ctx, stage: str, result) -> None:
    """A bench stage's energy per output token, one row per telemetry window (studykit.energy.TelemetryEnergy):
    J/token, tokens/J, dynamic J/token (idle power taken out, when it is known), mean power, sampling interval,
    coverage, source; a window without energy says why (its check's detail). One line when no window has any."""
    checks = {c.subject: c for c in result.checks if c.id == f"{stage}.energy_per_token"}

    def why(tel) -> str:
        c = checks.get(tel.label)
        if c is not None:
            return check_detail(c, ctx.lang)
        return reason_text(ctx, stage, tel.energy_not_run) if tel.energy_not_run else ctx.t("energy_none_recorded")

    windows = result.telemetry
    if not any(tel.energy for tel in windows):
        reasons = list(dict.fromkeys(why(tel) for tel in windows)) or [DASH]
        ctx.md.p(ctx.t("energy_not_run", why="; ".join(reasons)))
        return
    ctx.md.p(f"**{ctx.t('energy_title')}**")
    rows = []
    for tel in windows:
        e = tel.energy
        if e is None:
            rows.append([tel.label] + [DASH] * 6 + [why(tel)])
            continue
        rows.append([tel.label, fmt(e.joules_per_token), fmt(e.tokens_per_joule), fmt(e.dynamic_joules_per_token),
                     fmt(e.mean_power_w), fmt(e.interval_s), f"{e.coverage * 100:.1f} %",
                     f"{e.source} ({', '.join(e.domains)})"])
    ctx.md.table([ctx.t(k) for k in ("energy_col_window", "energy_col_jpt", "energy_col_tpj", "energy_col_dynamic",
                                     "energy_col_power", "energy_col_interval", "energy_col_coverage",
                                     "energy_col_source")], rows)
    if result.idle_power_w is not None:
        ctx.md.p(ctx.t("energy_idle", w=f"{fmt(result.idle_power_w)} W"))
    elif result.idle_not_run:
        ctx.md.p(ctx.t("energy_idle", w=reason_text(ctx, stage, result.idle_not_run)))


def reason_text(ctx: Ctx, stage: str, reason: str) -> str:
    """Why an energy or idle power was not measured, in the reader's language (the energy check's templates)."""
    return (zh_detail(f"{stage}.energy_per_token", reason) if ctx.lang == "zh" else None) or reason


def checks_table(ctx: Ctx, stages: list[str]) -> int:
    """Every check of the stages: its name and subject in the reader's language, status, detail."""
    rows = []
    for stage in stages:
        for c in ctx.run.stages[stage].checks:
            rows.append([stage, check_name(c, ctx.lang), check_subject(c, ctx.lang), check_status(ctx, c.status),
                         check_detail(c, ctx.lang)])
    ctx.md.table([ctx.t("col_stage"), ctx.t("col_check"), ctx.t("col_subject"), ctx.t("col_status"),
                  ctx.t("col_detail")], rows)
    return len(rows)
