"""The comparison as a reader wants it: what differs first, then one table (metric, A, B, change ± CI, verdict),
then the counts; Markdown (zh or en) and one HTML file."""

from __future__ import annotations

import html

from studykit.compare.statistics import DEFAULT_MARGIN, Change

TEXT = {
    "en": {"title": "Comparison", "runs": "Runs", "differs": "What differs", "same": "nothing differs",
           "table": "Metrics", "metric": "Metric", "change": "Change [95 % CI]", "test": "Test (p, BH-adjusted)",
           "verdict": "Verdict", "norm": "Normalised by the machine probe", "why": "How",
           "summary": "{worse} worse, {better} better, {same} same within noise, {nc} not comparable",
           "none": "no change beyond noise",
           "floor": "Noise margins: the run-to-run floor measured in {src}; a metric it lacks: ±{flat} %.",
           "flat": "Noise margins: ±{flat} % (no measured floor for this platform; measure one with "
                   "benchmarks/noise_floor.py and pass it with --noise-floor).",
           "section": {"params": "params", "packages": "packages",
           "model files": "model files", "machine": "machine", "machine probe": "machine probe",
           "vllm engine": "vLLM engine config"}},
    "zh": {"title": "运行对比", "runs": "运行", "differs": "差异项", "same": "无差异",
           "table": "指标", "metric": "指标", "change": "变化 [95% 置信区间]", "test": "检验 (p, BH 校正)",
           "verdict": "结论", "norm": "按机器探针归一化", "why": "说明",
           "summary": "变差 {worse} 项, 变好 {better} 项, 噪声范围内无变化 {same} 项, 不可比 {nc} 项",
           "none": "无超出噪声的变化",
           "floor": "噪声阈值: 实测的运行间噪声基线 {src}; 基线未覆盖的指标: ±{flat} %。",
           "flat": "噪声阈值: ±{flat} % (本平台无实测噪声基线; 可用 benchmarks/noise_floor.py 测量并以 --noise-floor 传入)。",
           "section": {"params": "参数", "packages": "软件包", "model files": "模型文件",
           "machine": "机器", "machine probe": "机器探针", "vllm engine": "vLLM 引擎配置"}},
}
VERDICT_ZH = {"worse": "变差", "better": "变好", "same within noise": "噪声范围内无变化", "not comparable": "不可比"}


def _num(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _change(c: Change) -> str:
    if c.change is None:
        return "—"
    fmt = (lambda x: f"{x * 100:+.1f} %") if c.relative else (lambda x: f"{x:+.4g}")
    ci = f" [{fmt(c.ci_low)}, {fmt(c.ci_high)}]" if c.ci_low is not None else ""
    return fmt(c.change) + ci


def markdown(runs: list[str], differs: dict, changes: list[Change], lang: str = "en",
             noise_floor: str | None = None) -> str:
    """noise_floor: where the margins were measured (None: the flat defaults)."""
    t = TEXT[lang]
    lines = [f"# {t['title']}", "", f"{t['runs']}: A = `{runs[0]}`, B = `{runs[1]}`", "", f"## {t['differs']}", ""]
    any_diff = False
    for section, rows in differs.items():
        if not rows:
            continue
        any_diff = True
        lines.append(f"**{t['section'][section]}**")
        lines.append("")
        lines += ["| key | A | B |", "| --- | --- | --- |"]
        lines += [f"| {k} | {_num(x)} | {_num(y)} |".replace("\n", " ") for k, x, y in rows[:60]]
        if len(rows) > 60:
            lines.append(f"| … {len(rows) - 60} more | | |")
        lines.append("")
    if not any_diff:
        lines += [t["same"], ""]
    counts = {v: sum(1 for c in changes if c.verdict == v) for v in VERDICT_ZH}
    lines += [f"## {t['table']}", "",
              t["summary"].format(worse=counts["worse"], better=counts["better"], same=counts["same within noise"],
                                  nc=counts["not comparable"]), ""]
    if not counts["worse"] and not counts["better"]:
        lines += [t["none"], ""]
    flat = f"{DEFAULT_MARGIN['relative'] * 100:g}"
    lines += [t["floor"].format(src=f"`{noise_floor}`", flat=flat) if noise_floor else t["flat"].format(flat=flat), ""]
    lines += [f"| {t['metric']} | A | B | {t['change']} | {t['test']} | {t['verdict']} | {t['norm']} | {t['why']} |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in changes:
        test = c.test if c.p_value is None else f"{c.test} (p {c.p_value:.3g}, {c.p_adjusted:.3g})"
        verdict = VERDICT_ZH[c.verdict] if lang == "zh" else c.verdict
        norm = "—" if c.normalised is None else f"{c.normalised * 100:+.1f} % ({c.probe})"
        lines.append(f"| {c.label} [{c.unit}] | {_num(c.a)} | {_num(c.b)} | {_change(c)} | {test} | **{verdict}** "
                     f"| {norm} | {c.why} |")
    return "\n".join(lines) + "\n"


def to_html(texts: dict[str, str], title: str) -> str:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    body = "\n".join(f'<section lang="{lang}">{md.render(text)}</section>' for lang, text in texts.items())
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title>"
            "<style>table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.2em .5em}</style>"
            "</head><body>" + body + "</body></html>\n")
