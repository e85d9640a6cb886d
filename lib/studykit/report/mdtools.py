"""Markdown building blocks: number formatting, escaped tables, fenced commands."""

from __future__ import annotations

import math
from typing import Any

DASH = "—"


def fmt(v: Any) -> str:
    """Numbers as the JSON has them, rounded for reading: ints in full, floats to 2-4 significant decimals.

    The report tests compare table cells with fmt of the field each cell shows, so this is the one rounding.
    """
    if v is None or v == "":
        return DASH
    if isinstance(v, bool):
        return "true" if v else "false"  # as the study file writes it
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{v:,.2f}"
        if a >= 1:
            return f"{v:.3f}"
        if a >= 1e-3:
            return f"{v:.4f}"
        return f"{v:.3e}"
    if isinstance(v, str) and v in ("inf", "-inf"):
        return v
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v) if v else DASH
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items()) if v else DASH
    return str(v)


def fmt_delta(value: Any, ref: Any) -> str:
    if not isinstance(value, (int, float)) or not isinstance(ref, (int, float)) or isinstance(value, bool) \
            or isinstance(ref, bool) or ref == 0:
        return DASH
    return f"{(value - ref) / abs(ref) * 100:+.1f}"


def fmt_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return DASH
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def cell(text: Any) -> str:
    s = text if isinstance(text, str) else fmt(text)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>") or DASH


def inline_code(s: str) -> str:
    ticks = "``" if "`" in s else "`"
    pad = " " if "`" in s else ""
    return f"{ticks}{pad}{s}{pad}{ticks}"


class Md:
    def __init__(self):
        self.parts: list[str] = []

    def h(self, level: int, text: str) -> "Md":
        self.parts.append(f"{'#' * level} {text}")
        return self

    def p(self, text: str) -> "Md":
        if text:
            self.parts.append(text)
        return self

    def bullets(self, items: list[str]) -> "Md":
        if items:
            self.parts.append("\n".join(f"- {i}" for i in items))
        return self

    def table(self, headers: list[str], rows: list[list[Any]]) -> "Md":
        if not rows:
            return self
        lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
        self.parts.append("\n".join(lines))
        return self

    def code(self, text: str, lang: str = "bash") -> "Md":
        fence = "````" if "```" in text else "```"
        self.parts.append(f"{fence}{lang}\n{text.rstrip()}\n{fence}")
        return self

    def quote(self, text: str) -> "Md":
        self.parts.append("\n".join("> " + line for line in text.splitlines()))
        return self

    def image(self, path: str, alt: str) -> "Md":
        self.parts.append(f"![{alt}]({path})")
        return self

    def text(self) -> str:
        return "\n\n".join(self.parts).rstrip() + "\n"
