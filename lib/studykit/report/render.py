"""Markdown per language, and one self-contained HTML file (charts inlined as base64) holding every language."""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from markdown_it import MarkdownIt

from studykit.evidence.journal import utc_now
from studykit.report.i18n import t
from studykit.report.model import MEASURING_STAGES
from studykit.report.mdtools import DASH, Md, inline_code
from studykit.report.blocks import Ctx, status_text
from studykit.report.i18n import LANGUAGES, S
from studykit.report.reference import in_lang
from studykit.report.sections import SECTIONS

CSS = """
body{font-family:-apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;
 max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.55;color:#222}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f3f3}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
code{font-family:"SFMono-Regular",Consolas,monospace;font-size:.9em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
blockquote{border-left:4px solid #ddd;margin:0;padding:.2em 1em;color:#555}
nav.lang{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #eee}
section.lang+section.lang{border-top:3px double #ccc;margin-top:3em}
"""


def report_markdown(ctx: Ctx) -> str:
    run = ctx.run
    model_id = (run.params("model").get("id") or run.name)
    platform = run.study.get("platform") or DASH
    md = ctx.md
    md.h(1, ctx.t(f"title_{platform}", model=model_id) if f"title_{platform}" in S
         else ctx.t("title", model=model_id, platform=platform))
    md.p(ctx.t("generated", run=run.root.name))
    # The report stage runs before the runner closes run.json, so the status is taken from the stages.
    asked = [st for st in run.stages.values() if st.name in MEASURING_STAGES and (st.requested or st.ran)]
    status = "failed" if any(st.status != "passed" for st in asked) else ("passed" if asked else DASH)
    md.p(f"{ctx.t('run_status')}: {status_text(ctx, status)} · study `{run.name}` · "
         f"{ctx.t('run_started')} {run.run.get('started_utc') or DASH} · {ctx.t('generated_at')} {utc_now()}")
    if ctx.ref:
        md.p(ctx.t("reference_note", ref=inline_code(in_lang(ctx.ref.title, ctx.lang)),
                   source=in_lang(ctx.ref.sources, ctx.lang)))
        if ctx.ref.not_measurable:
            md.p(ctx.t("ref_not_measurable"))
            md.bullets([f"{k}: {in_lang(v, ctx.lang)}" for k, v in ctx.ref.not_measurable.items()])
    if ctx.ref_error:
        md.p("⚠ " + ctx.ref_error)
    for problem in run.problems:
        md.p("⚠ " + problem)
    for section in SECTIONS:
        section(ctx)
    return md.text()


def _md_parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def _inline_images(body: str, root: Path) -> str:
    """Replace relative <img src> with data: URIs so the HTML file stands alone."""

    def sub(m: re.Match) -> str:
        src = html.unescape(m.group(2))
        if src.startswith(("data:", "http:", "https:")):
            return m.group(0)
        path = (root / src).resolve()
        if not path.is_file():
            return m.group(0)
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{m.group(1)}data:{mime};base64,{data}{m.group(3)}'

    return re.sub(r'(<img[^>]*?\ssrc=")([^"]+)(")', sub, body)


# A status is a word in the Markdown; the HTML gives it a colour too (text stays, so it reads without colour).
STATUS_COLOURS = {"passed": "#1a7f37", "failed": "#cf222e", "not run": "#6e7781", "interrupted": "#9a6700",
                  "running": "#9a6700", "unreadable": "#9a6700"}


def status_colours(lang: str) -> dict[str, str]:
    """The status words of a language (table cells, the verdict) -> their colour."""
    out = {S[f"status_{k}"][lang]: colour for k, colour in STATUS_COLOURS.items()}
    out[S["verdict_passed"][lang]] = STATUS_COLOURS["passed"]
    out[S["verdict_failed"][lang]] = STATUS_COLOURS["failed"]
    return out


def _colour_statuses(body: str, lang: str) -> str:
    """A table cell that is a status word, and the verdict's word, in its colour."""
    colours = status_colours(lang)

    def cell(m: re.Match) -> str:
        word = html.unescape(m.group(2))
        return f'{m.group(1)}<span style="color:{colours[word]}">{m.group(2)}</span>{m.group(3)}' \
            if word in colours else m.group(0)

    body = re.sub(r"(<td>)([^<]+)(</td>)", cell, body)
    verdict = re.escape(html.escape(S["c_verdict"][lang]))
    return re.sub(rf"(<strong>{verdict}: ?)([^<]+)(</strong>)", cell, body)


def report_html(texts: dict[str, str], root: Path, title: str) -> str:
    parser = _md_parser()
    langs = list(texts)
    nav = " · ".join(f'<a href="#lang-{lang}">{"中文" if lang == "zh" else "English"}</a>' for lang in langs)
    sections = []
    for lang in langs:
        body = _inline_images(parser.render(texts[lang]), root)
        if lang in LANGUAGES:
            body = _colour_statuses(body, lang)
        sections.append(f'<section class="lang" id="lang-{lang}" lang="{"zh-CN" if lang == "zh" else "en"}">\n'
                        f"{body}</section>")
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + (f'<nav class="lang">{nav}</nav>\n' if len(langs) > 1 else "")
            + "\n".join(sections) + "\n</body>\n</html>\n")


def new_ctx(run, lang, **kw) -> Ctx:
    return Ctx(run=run, lang=lang, md=Md(), **kw)


__all__ = ["report_markdown", "report_html", "new_ctx", "t"]
