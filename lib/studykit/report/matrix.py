"""One comparison across the runs of a study matrix (`studykit run A.yaml B.yaml ...`).

One column per run; rows are stage status, the main metrics of every stage (vLLM's names, as in each run's
report) and the check counts. Cells after the first run show the delta (%) against the first run.
"""

from __future__ import annotations

from pathlib import Path

from studykit.evidence.rundir import write_json, write_text
from studykit.schema.metrics import all_metrics
from studykit.report.blocks import Ctx, metric_label, status_text
from studykit.report.i18n import LANGUAGES, t
from studykit.report.mdtools import DASH, Md, fmt, fmt_delta
from studykit.report.model import MEASURING_STAGES, Run, load_run
from studykit.report.render import report_html


def comparison_markdown(runs: list[Run], lang: str) -> str:
    md = Md()
    md.h(1, t("mx_title", lang))
    md.p(t("mx_intro", lang))
    heads = [f"{i + 1}. {r.name}" for i, r in enumerate(runs)]
    md.table([t("col_item", lang)] + heads, [
        ["model", *[r.params("model").get("id") or DASH for r in runs]],
        ["platform", *[r.study.get("platform") or DASH for r in runs]],
        [t("col_run", lang), *[f"`{r.root}`" for r in runs]],
        [t("run_status", lang), *[status_text(Ctx(r, lang, {}), r.run.get("status") or DASH) for r in runs]],
    ])
    md.h(2, t("mx_status", lang))
    md.table([t("col_stage", lang)] + heads,
             [[s, *[status_text(Ctx(r, lang, {}), r.stages[s].status) for r in runs]] for s in MEASURING_STAGES])
    md.h(2, t("mx_metrics", lang))
    rows = []
    for m in all_metrics():
        values = [r.stages[m.stage].value(m) for r in runs]
        if all(v is None for v in values):
            continue
        cells = []
        for i, v in enumerate(values):
            c = fmt(v)
            if i > 0 and v is not None and values[0] is not None:
                d = fmt_delta(v, values[0])
                c += f" ({d} %)" if d != DASH else ""
            cells.append(c)
        rows.append([f"{m.stage}: {metric_label(m, lang)}", m.unit, *cells])
    md.table([t("col_metric", lang), t("col_unit", lang)] + heads, rows)
    checks = []
    for r in runs:
        cs = [c for st in r.stages.values() for c in st.checks]
        checks.append(f"{sum(1 for c in cs if c.status == 'passed')}/{len(cs)}")
    md.table([t("col_check", lang)] + heads, [[t("mx_checks", lang), *checks]])
    md.h(2, t("mx_reports", lang))
    md.bullets([f"{r.name}: `{r.root / 'report.html'}`" + ("" if (r.root / "report.html").exists() else f" ({DASH})")
                for r in runs])
    return md.text()


def write_comparison(run_dirs: list[str | Path], out_dir: str | Path,
                     languages: tuple[str, ...] = LANGUAGES) -> dict[str, str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(d) for d in run_dirs]
    texts = {lang: comparison_markdown(runs, lang) for lang in languages}
    paths = {}
    for lang, text in texts.items():
        paths[f"comparison.{lang}.md"] = str(write_text(out / f"comparison.{lang}.md", text))
    paths["comparison.html"] = str(write_text(out / "comparison.html",
                                              report_html(texts, out, t("mx_title", languages[0]))))
    write_json(out / "matrix.json", {"runs": [str(r.root) for r in runs], "files": paths})
    return paths
