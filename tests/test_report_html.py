"""report.html in a real browser: headless Chromium loads the single file at 1280 px wide, decodes every chart,
shows it without horizontal overflow, switches between the zh and en sections, and draws the Chinese text with
real glyphs (not the empty boxes of a machine without a CJK font).

Needs the Debian packages `chromium` and a CJK font (`make browser` installs both: fonts-wqy-microhei);
skipped, saying so, when Chromium is not installed. Screenshots stay in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from studykit.report import build_report
from test_report import golden_copy

DATA = Path(__file__).parent / "data" / "runs"
# Real recorded runs (tools/record_golden_run.py): every stage, and one with failures.
REPORT_RUNS = ["golden", "golden-failed"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH_PX = 1280
VIEWPORT_HEIGHT_PX = 900
C0 = np.array([31, 119, 180])  # matplotlib's first line colour, #1f77b4
SUMMARY_HEADINGS = {"zh": "摘要", "en": "Summary"}
LATIN_FONTS = ("DejaVu Sans", "Liberation Sans")  # the fonts Debian's fontconfig pulls in: no Chinese

# Runs on load and leaves its findings as JSON in <body data-probe>, which --dump-dom prints.
# Tofu check: every distinct non-ASCII character of the page (the zh section's CJK counted apart) is drawn on
# a canvas in the zh section's font and compared with the drawing of a code point no font has (U+10FFFD);
# a character drawn like that is an empty box.
PROBE = r"""<script>
window.addEventListener("load", () => {
  const out = {viewportWidth: document.documentElement.clientWidth,
               scrollWidth: document.documentElement.scrollWidth,
               height: document.documentElement.scrollHeight,
               overflowing: [...document.querySelectorAll("body *")]
                 .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                              && !(e.parentElement.getBoundingClientRect().right >
                                   document.documentElement.clientWidth + 1))
                 .slice(0, 5).map(e => e.tagName + " " + Math.round(e.getBoundingClientRect().right) + "px: "
                                       + e.textContent.trim().slice(0, 80)),
               images: [...document.images].map(i => i.complete ? i.naturalWidth : -1)};
  out.sections = [...document.querySelectorAll("section.lang")].map(s => ({
    id: s.id, lang: s.getAttribute("lang"),
    firstH2: (s.querySelector("h2") || {}).textContent || null}));
  out.navLinks = [...document.querySelectorAll("nav a")].map(a => {
    const target = document.querySelector(a.hash || "#none");
    a.click();
    const box = target ? target.getBoundingClientRect() : null;
    const visible = !!target && target.offsetParent !== null && box.height > 0;
    return {text: a.textContent, hash: a.hash, target: !!target, visible,
            inView: !!box && visible && box.top >= -1 && box.top < window.innerHeight};
  });
  const zh = document.querySelector("section.lang[lang^=zh]") || document.body;
  const cjk = [...new Set(zh.textContent.match(/[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/gu) || [])];
  const nonAscii = [...new Set(document.body.textContent.match(/[^\u0000-\u00a0\s]/gu) || [])];
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 48;
  const g = canvas.getContext("2d", {willReadFrequently: true});
  g.font = "40px " + getComputedStyle(zh).fontFamily;
  g.textBaseline = "top";
  const draw = ch => { g.clearRect(0, 0, 48, 48); g.fillText(ch, 2, 2);
                       return g.getImageData(0, 0, 48, 48).data.join(","); };
  const tofu = draw("\u{10FFFD}");
  out.cjkChars = cjk.length;
  out.tofuCjkChars = cjk.filter(ch => draw(ch) === tofu);
  out.distinctCjkDrawings = new Set(cjk.map(draw)).size;
  out.tofuChars = nonAscii.filter(ch => draw(ch) === tofu)
    .map(ch => ch + " U+" + ch.codePointAt(0).toString(16).toUpperCase());
  document.body.setAttribute("data-probe", JSON.stringify(out));
});
</script></body>"""


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium: install the Debian package with `apt-get install chromium` (make browser)")


def headless(exe: str, profile: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          check=False, capture_output=True, text=True, timeout=600, env=env)


def probe(exe: str, html: str, where: Path, env: dict | None = None) -> dict:
    page = where / "probe.html"
    page.write_text(html.replace("</body>", PROBE), encoding="utf-8")
    dom = headless(exe, where / "profile", f"--window-size={WIDTH_PX},{VIEWPORT_HEIGHT_PX}", "--dump-dom",
                   page.as_uri(), env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, f"the probe did not run:\n{dom.stderr[-2000:]}"
    return json.loads(unescape(found.group(1)))


@pytest.fixture(scope="module", params=REPORT_RUNS)
def report(request, tmp_path_factory) -> tuple[Path, str]:
    """A rebuilt report.html copied alone into a fresh directory: only that one file travels."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    run = tmp_path / "run"
    golden_copy(request.param, run)
    build_report(run)
    alone = tmp_path / "shared" / "report.html"
    alone.parent.mkdir()
    shutil.copy(run / "report.html", alone)
    return run, alone.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def probed(report) -> dict:
    run, html = report
    return probe(browser(), html, run.parent / "shared")


def test_report_fits_1280px_and_every_image_loads(report, probed):
    run, _ = report
    assert probed["viewportWidth"] == WIDTH_PX
    assert probed["scrollWidth"] <= WIDTH_PX, (
        f"horizontal overflow: the page is {probed['scrollWidth']} px wide; widest: {probed['overflowing']}")
    charts = sorted((run / "charts").glob("*.png"))
    assert charts
    assert len(probed["images"]) == 2 * len(charts), probed["images"]  # every chart, once per language
    assert all(w > 0 for w in probed["images"]), f"an image did not decode: {probed['images']}"


def test_zh_en_switch_reaches_both_sections(probed):
    assert [(s["id"], s["lang"]) for s in probed["sections"]] == [("lang-zh", "zh-CN"), ("lang-en", "en")]
    links = probed["navLinks"]
    assert [(a["text"], a["hash"]) for a in links] == [("中文", "#lang-zh"), ("English", "#lang-en")]
    for link in links:
        assert link["target"] and link["visible"] and link["inView"], link


def test_chinese_text_is_drawn_with_real_glyphs(probed, report, tmp_path):
    assert probed["cjkChars"] > 20, "the zh section has almost no Chinese text"
    assert probed["tofuCjkChars"] == [], f"drawn as empty boxes: {''.join(probed['tofuCjkChars'])}"
    assert probed["distinctCjkDrawings"] == probed["cjkChars"]
    assert probed["tofuChars"] == [], "characters of the page no installed font has (drawn as empty boxes)"
    # The same page with only a Latin font must be caught: proves the check can fail.
    latin = _latin_only_fontconfig(tmp_path / "latin-fonts")
    (tmp_path / "latin").mkdir()
    without = probe(browser(), report[1], tmp_path / "latin", env={**os.environ, "FONTCONFIG_FILE": str(latin)})
    assert len(without["tofuCjkChars"]) == without["cjkChars"] == probed["cjkChars"], without["tofuCjkChars"][:20]


def test_first_section_of_each_language_is_the_summary(probed):
    # A section number ("1. ") may precede the heading.
    first = {s["id"]: re.sub(r"^\d+(\.\d+)*\.?\s*", "", (s["firstH2"] or "").strip()) for s in probed["sections"]}
    assert first == {f"lang-{lang}": heading for lang, heading in SUMMARY_HEADINGS.items()}


def test_screenshot_shows_the_charts_in_both_languages(report, probed, tmp_path):
    shot = tmp_path / "shot.png"
    result = headless(browser(), tmp_path / "profile", f"--window-size={WIDTH_PX},{probed['height'] + 100}",
                      f"--screenshot={shot}", (report[0].parent / "shared" / "report.html").as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    line = (np.abs(pixels - C0) < 25).all(axis=2)
    rows_with_line = np.nonzero(line.any(axis=1))[0]
    assert line.sum() > 200, "no chart lines visible in the screenshot"
    # The charts are drawn in both language sections: line pixels in the upper and in the lower half.
    assert rows_with_line.min() < probed["height"] / 2 < rows_with_line.max()


def _latin_only_fontconfig(where: Path) -> Path:
    """A fontconfig file that knows one installed font without Chinese: Chromium then has no CJK glyph."""
    def files(pattern: str) -> list[str]:
        listed = subprocess.run(["fc-list", "-f", "%{file}\n", pattern], check=False, capture_output=True, text=True)
        return listed.stdout.split()

    with_zh = set(files(":lang=zh"))
    # Plain text fonts only: a symbol font such as Symbola also draws a few CJK-range characters.
    latin = [f for family in LATIN_FONTS for f in sorted(files(family)) if f not in with_zh]
    if not latin:
        pytest.skip(f"none of {LATIN_FONTS} installed to compare against (fc-list lists none)")
    where.mkdir(parents=True)
    (where / "fonts").mkdir()
    shutil.copy(latin[0], where / "fonts")
    conf = where / "fonts.conf"
    conf.write_text(f'<?xml version="1.0"?>\n<fontconfig><dir>{where / "fonts"}</dir>'
                    f'<cachedir>{where / "cache"}</cachedir></fontconfig>\n', encoding="utf-8")
    return conf
