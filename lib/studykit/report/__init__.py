"""The study report: report.zh.md, report.en.md and report.html written into a run directory from its files.

    from studykit.report import build_report
    summary = build_report(run_dir, reference="params/reference/seed-bitcpm4-0.5b-ascend.yaml")

Only reads: results/*.json, run.json, params.yaml, commands.jsonl, logs, charts, and the checkpoint's own
config.json / manifest / safetensors headers (a description of the model, not a measurement).
"""

from __future__ import annotations

import time
from pathlib import Path

from studykit.evidence.rundir import write_text
from studykit.report.i18n import LANGUAGES
from studykit.engine.logwarnings import collect_warnings
from studykit.report.model import Run, load_run
from studykit.report.modelinfo import describe_model
from studykit.report.reference import Reference, ReferenceError, load_reference
from studykit.report.render import new_ctx, report_html, report_markdown

__all__ = ["build_report", "load_run", "adaptation_for", "ReferenceError"]


def adaptation_for(run: Run, model_dir: Path | None) -> tuple[dict | None, str]:
    """Adaptation facts: stored in a result if a stage recorded them, else asked of the installed vLLM."""
    for st in run.stages.values():
        a = getattr(st.result, "adaptation", None)
        if isinstance(a, dict):
            return a, f"results/{st.name}.json"
    stored = run.root / "results" / "adaptation.json"
    if stored.is_file():
        from studykit.evidence.rundir import read_json

        try:
            return read_json(stored), "results/adaptation.json"
        except ValueError:
            pass
    if model_dir is None or not Path(model_dir).is_dir():
        return None, "—"
    try:
        from studykit.engine.adaptation import adaptation_notes
    except ImportError:
        return None, "—"
    try:
        return adaptation_notes(model_dir), "studykit.engine.adaptation (installed vllm)"
    except Exception as err:  # noqa: BLE001 - the report is written even when this lookup breaks
        return {"error": f"{type(err).__name__}: {err}"}, "studykit.engine.adaptation"


def build_report(run_dir: str | Path, reference: str | None = None,
                 languages: list[str] | tuple[str, ...] = LANGUAGES) -> dict:
    """Write the report files; return what they were built from (the report stage stores it)."""
    t0 = time.monotonic()
    bad = [lang for lang in languages if lang not in LANGUAGES]
    if bad or not languages:
        raise ValueError(f"report languages {list(languages)!r} not allowed; allowed: {', '.join(LANGUAGES)}")
    run = load_run(run_dir)
    model = describe_model(run.model_dir)
    ref: Reference | None = None
    ref_error = None
    if reference:
        try:
            ref = load_reference(reference, run.root)
        except ReferenceError as err:
            ref_error = str(err)
    adaptation, adaptation_source = adaptation_for(run, run.model_dir)
    warnings = collect_warnings(run.root)
    from studykit.engine.startup import engine_starts

    try:
        startup = engine_starts(run.root)
    except Exception as err:  # noqa: BLE001 - the report is written even when a log cannot be read
        startup, run.problems = [], run.problems + [f"engine start-up table: {type(err).__name__}: {err}"]
    texts = {}
    files = {}
    for lang in languages:
        ctx = new_ctx(run, lang, model=model, ref=ref, ref_error=ref_error, adaptation=adaptation, warnings=warnings,
                      startup=startup)
        texts[lang] = report_markdown(ctx)
        files[f"report.{lang}.md"] = str(write_text(run.root / f"report.{lang}.md", texts[lang]))
    title = texts[languages[0]].splitlines()[0].lstrip("# ").strip()
    files["report.html"] = str(write_text(run.root / "report.html", report_html(texts, run.root, title)))
    checks = [(st.name, c) for st in run.stages.values() for c in st.checks]
    return {
        "files": files,
        "languages": list(languages),
        "reference": {"given": reference, "label": ref.label if ref else None, "source": ref.source if ref else None,
                      "error": ref_error},
        "model": model,
        "adaptation": adaptation,
        "adaptation_source": adaptation_source,
        "warning_groups": len(warnings or []),
        "startup": startup,
        "checks_count": {k: sum(1 for _, c in checks if c.status == k) for k in ("passed", "failed", "not_run")},
        "checks_failed": [f"{s}: {c.name}" for s, c in checks if c.status == "failed"],
        "stage_status": {name: st.status for name, st in run.stages.items() if name != "report"},
        "generation_seconds": round(time.monotonic() - t0, 3),
        "run_status": run.run.get("status"),
    }
