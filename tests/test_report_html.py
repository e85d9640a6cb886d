"""report.html in a real browser: headless Chromium loads the single file, decodes every chart, and the
screenshot shows them (matplotlib's default line colour appears where the charts are).

Needs the Debian package `chromium` (apt-get install chromium); skipped, saying so, when it is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studykit.report import build_report

DATA = Path(__file__).parent / "data" / "runs"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
C0 = np.array([31, 119, 180])  # matplotlib's first line colour, #1f77b4
PROBE = ('<script>window.addEventListener("load",()=>{const b=document.body;'
         'b.setAttribute("data-imgs",[...document.images].map(i=>i.complete?i.naturalWidth:-1).join(","));'
         'b.setAttribute("data-height",document.documentElement.scrollHeight)})</script></body>')


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium: install the Debian package with `apt-get install chromium`")


def headless(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_html_shows_the_charts_in_chromium(tmp_path):
    exe = browser()
    run = tmp_path / "run"
    shutil.copytree(DATA / "complete", run)
    build_report(run)
    charts = sorted((run / "charts").glob("*.png"))
    assert charts
    html = (run / "report.html").read_text()
    # Only the one file travels: prove nothing outside it is needed.
    alone = tmp_path / "shared" / "report.html"
    alone.parent.mkdir()
    alone.write_text(html)
    probe = alone.with_name("probe.html")
    probe.write_text(html.replace("</body>", PROBE))

    dom = headless(exe, tmp_path / "profile", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    widths = re.search(r'data-imgs="([^"]*)"', dom.stdout).group(1).split(",")
    assert len(widths) == 2 * len(charts), widths  # every chart, once per language
    assert all(int(w) > 0 for w in widths), f"an image did not decode: {widths}"
    height = int(re.search(r'data-height="(\d+)"', dom.stdout).group(1))

    shot = tmp_path / "shot.png"
    result = headless(exe, tmp_path / "profile", f"--window-size=1280,{height + 100}", f"--screenshot={shot}",
                      alone.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    line = (np.abs(pixels - C0) < 25).all(axis=2)
    rows_with_line = np.nonzero(line.any(axis=1))[0]
    assert line.sum() > 200, "no chart lines visible in the screenshot"
    # The charts are drawn in both language sections: line pixels in the upper and in the lower half.
    assert rows_with_line.min() < height / 2 < rows_with_line.max()
