"""Warnings from a run's server and benchmark logs, grouped and counted, for the "known issues" section.

studykit.engine.logscan classifies single lines; this module adds what needs the whole log and the run around it:

- a Python traceback is ONE entry, named by its final exception line, however many lines it spans (vLLM
  prefixes every line of it with its own "ERROR <time> [file:line]");
- lines a server wrote after the kit sent it its stop signal (`stop_signal_utc` in commands.jsonl, compared
  with the log's own timestamps) are level "shutdown", not "error" or "warning": they describe the stop the
  kit asked for, not a fault of the run.

Rows: {"message", "level" ("error" | "warning" | "shutdown"), "count", "logs", "known", "note"}.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from studykit.engine import vllm_log
from studykit.engine.logscan import scan_lines
from studykit.evidence.journal import parse_utc, read_commands
from studykit.evidence.rundir import RunLayout

SHUTDOWN = "shutdown"
TRACEBACK_START = "Traceback (most recent call last):"
# The line that ends a traceback: "pkg.module.SomeError: text" or a bare "KeyboardInterrupt".
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning)\b(?::.*)?$")
# Python chains tracebacks with these; the chain stays one entry, named by its last exception.
CHAIN_LINES = ("During handling of the above exception", "The above exception was the direct cause")


@dataclass
class LogLine:
    line: str                 # without colours
    text: str                 # the message: without vLLM's prefix, when the line has one
    after_stop: bool


@dataclass
class Traceback:
    exception: str
    after_stop: bool


@dataclass
class SplitLog:
    before_stop: list[str] = field(default_factory=list)
    after_stop: list[str] = field(default_factory=list)
    tracebacks: list[Traceback] = field(default_factory=list)


def run_logs(root: Path) -> list[Path]:
    layout = RunLayout(root)
    logs = sorted(layout.logs.glob("*.log")) + sorted(layout.raw.glob("**/*.log"))
    return [p for p in logs if p.is_file()]


def stop_signals(root: Path) -> dict[str, datetime]:
    """Log path (resolved) → when the kit sent that server its stop signal, from commands.jsonl."""
    out: dict[str, datetime] = {}
    for rec in read_commands(root):
        stamp = (rec.get("extra") or {}).get("stop_signal_utc")
        if stamp and rec.get("log"):
            out[_log_key(root, rec["log"])] = parse_utc(stamp)
    return out


def _log_key(root: Path, log: str) -> str:
    p = Path(log)
    # A run directory may have been moved or copied since: match on the path inside the run.
    parts = p.parts
    for anchor in ("logs", "raw"):
        if anchor in parts:
            return str(Path(*parts[len(parts) - parts[::-1].index(anchor) - 1:]))
    try:
        return str(p.relative_to(root) if p.is_absolute() else p)
    except ValueError:
        return str(p)  # outside the run: matches no log of it


def parse_lines(lines: list[str], stop: datetime | None) -> list[LogLine]:
    """Every line once, colours and vLLM's prefix removed, marked when written at or after the stop signal.

    vLLM's stamps have whole seconds: a line stamped in the second of the stop counts as after it. Lines
    without a stamp (uvicorn, Python's own output) follow the last stamp seen."""
    stop_second = stop.replace(microsecond=0) if stop else None
    after = False
    out = []
    for raw in lines:
        line = vllm_log.ANSI.sub("", raw.rstrip("\n"))
        vllm = vllm_log.parse(line)
        if vllm is not None and stop_second is not None and not after:
            # the stop signal's year is the log's year; astimezone reads the naive stamp in the host's zone
            after = vllm.local_time(stop_second.year).astimezone(timezone.utc) >= stop_second
        out.append(LogLine(line, vllm.message if vllm else line, after))
    return out


def split_log(lines: list[str], stop: datetime | None = None) -> SplitLog:
    """Tracebacks out as single entries; the other lines divided at the stop signal."""
    parsed = parse_lines(lines, stop)
    split = SplitLog()
    i = 0
    while i < len(parsed):
        line = parsed[i]
        if line.text.strip() == TRACEBACK_START:
            end = _traceback_end(parsed, i)
            exception = next((p.text.strip() for p in reversed(parsed[i:end + 1])
                              if EXCEPTION_LINE.match(p.text.strip())), parsed[end].text.strip())
            split.tracebacks.append(Traceback(exception, line.after_stop))
            i = end + 1
            continue
        (split.after_stop if line.after_stop else split.before_stop).append(line.line)
        i += 1
    return split


# Raised in the API server because the engine died: a consequence, never the cause.
CONSEQUENCES = ("EngineDeadError", "vllm.v1.engine.exceptions.EngineDeadError")


def root_cause(log_path: str | Path) -> str | None:
    """The exception line of the first traceback in a server's log that is not a consequence of the engine's
    death (e.g. the engine core's own KeyError), else the first one; None when the log holds no traceback."""
    try:
        lines = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    found = [tb.exception for tb in split_log(lines).tracebacks]
    causes = [e for e in found if not e.startswith(CONSEQUENCES)]
    return (causes or found or [None])[0]


def _traceback_end(parsed: list[LogLine], start: int) -> int:
    """Index of the traceback's last line: its exception line, following chained tracebacks to the last one."""
    i = start + 1
    while i < len(parsed):
        text = parsed[i].text.rstrip()
        if EXCEPTION_LINE.match(text.strip()) and not text.startswith(" "):
            # A chained traceback follows after a blank line and one of Python's chain sentences.
            nxt = next((j for j in range(i + 1, min(i + 4, len(parsed))) if parsed[j].text.strip()), None)
            if nxt is not None and parsed[nxt].text.strip().startswith(CHAIN_LINES):
                i = nxt + 1
                continue
            return i
        if text and not text.startswith(" ") and not text.startswith(TRACEBACK_START) \
                and not text.strip().startswith(CHAIN_LINES) and not text.startswith("^"):
            return i - 1  # the traceback was cut short; what follows is an ordinary line
        i += 1
    return len(parsed) - 1


def _rows_of_log(root: Path, log: Path, stop: datetime | None) -> list[dict]:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    split = split_log(lines, stop)
    rows = []
    for level_override, chunk in ((None, split.before_stop), (SHUTDOWN, split.after_stop)):
        for item in scan_lines(chunk):
            rows.append({"key": item["pattern"], "message": _shown(item["example"]),
                         "level": level_override or item["level"], "count": int(item["count"]),
                         "known": bool(item.get("known")) and level_override is None,
                         # a known line keeps its explanation after the stop signal too (the shutdown ones have one)
                         "note": item.get("note")})
    for tb in split.tracebacks:
        rows.append({"key": "Traceback: " + tb.exception, "message": f"Traceback: {tb.exception}",
                     "level": SHUTDOWN if tb.after_stop else "error", "count": 1, "known": False, "note": None})
    return rows


def _shown(example: str) -> str:
    """A vLLM example as "[file.py:12] message", without process, level and time; paths as install_relative."""
    vllm = vllm_log.parse(example)
    if vllm is None:
        return install_relative(example.strip())
    return install_relative((f"[{vllm.where}] " if vllm.where else "") + vllm.message.strip())


def install_relative(text: str) -> str:
    """Paths inside the kit's virtual environment as "<venv>/lib/...", inside the Python it was made from as
    "<python>/lib/...": where the host keeps them tells a reader nothing, and they differ on every machine."""
    names = {sys.base_prefix: "<python>"}
    if sys.prefix != sys.base_prefix:
        names[sys.prefix] = "<venv>"
    for prefix in sorted(names, key=len, reverse=True):  # a venv inside the Python's own folder stays a venv
        if prefix.rstrip("/"):
            text = text.replace(prefix.rstrip("/") + "/", names[prefix] + "/")
    return text


def collect_warnings(root: Path) -> list[dict] | None:
    """Grouped warnings of every log in the run; None when the run has no logs at all."""
    root = Path(root)
    logs = run_logs(root)
    if not logs:
        return None
    stops = stop_signals(root)
    groups: dict[tuple, dict] = {}
    for log in logs:
        rel = str(log.relative_to(root))
        for row in _rows_of_log(root, log, stops.get(_log_key(root, str(log)))):
            g = groups.setdefault((row.pop("key"), row["level"]), {**row, "count": 0, "logs": []})
            g["count"] += row["count"]
            if rel not in g["logs"]:
                g["logs"].append(rel)
    order = {"error": 0, "warning": 1, SHUTDOWN: 2}
    return sorted(groups.values(), key=lambda g: (order.get(g["level"], 1), not g["known"], -g["count"],
                                                  g["message"]))
