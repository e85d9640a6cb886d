"""Warnings from a run's server and benchmark logs, grouped and counted, for the "known issues" section.

studykit.logscan (its own module) does the scanning when it is installed; this adapts its answer to rows
of {"message", "count", "logs"} and falls back to a plain grep of WARNING lines when it is not there.
"""

from __future__ import annotations

import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# vLLM's log prefix: "(APIServer pid=1) WARNING 11-25 02:26:19 [file.py:255] message"
VLLM_LINE = re.compile(r"(?:\((?P<proc>[^)]*)\)\s*)?(?P<level>WARNING|ERROR)\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+"
                       r"(?:\[(?P<where>[^\]]+)\]\s*)?(?P<msg>.*)")
PY_WARNING = re.compile(r"(?P<where>[^\s:]+\.py:\d+): (?P<cat>\w*Warning): (?P<msg>.*)")


def run_logs(root: Path) -> list[Path]:
    logs = sorted((root / "logs").glob("*.log")) + sorted((root / "raw").glob("**/*.log"))
    return [p for p in logs if p.is_file()]


def _normalise(msg: str) -> str:
    # pids, ports and counts differ between processes and runs; the message is the same warning.
    return re.sub(r"\b\d+\b", "N", msg.strip())


def shown_message(line: str) -> str:
    """A log line without its process/time prefix: "(APIServer pid=1) WARNING 11-25 02:26:19 [x.py:1] m" → "[x.py:1] m"."""
    line = ANSI.sub("", line)
    m = VLLM_LINE.search(line)
    if m:
        return (f"[{m.group('where')}] " if m.group("where") else "") + m.group("msg").strip()
    return line.strip()


def grep_warnings(path: Path) -> list[tuple[str, str]]:
    """(group key, first message) for each WARNING/ERROR line of one log."""
    out = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        line = ANSI.sub("", line)
        m = VLLM_LINE.search(line)
        if m:
            where = m.group("where") or ""
            msg = f"{m.group('level')} [{where}] {m.group('msg').strip()}" if where else \
                f"{m.group('level')} {m.group('msg').strip()}"
            out.append((_normalise(msg), msg))
            continue
        m = PY_WARNING.search(line)
        if m:
            msg = f"{m.group('cat')} [{m.group('where')}] {m.group('msg').strip()}"
            out.append((_normalise(msg), msg))
    return out


def _from_logscan(root: Path, logs: list[Path]) -> list[dict] | None:
    """Merge studykit.logscan's per-log groups across the run, keeping each group's log paths."""
    try:
        from ..logscan import scan_log  # the kit's scanner (known issues with notes); optional here
    except ImportError:
        return None
    groups: dict[tuple, dict] = {}
    for log in logs:
        try:
            found = scan_log(log)
        except Exception:  # noqa: BLE001 - a scanner bug must not cost the report
            return None
        for item in found or []:
            if not isinstance(item, dict):
                continue
            msg = shown_message(str(item.get("example") or item.get("message") or item.get("pattern") or ""))
            key = (str(item.get("pattern") or _normalise(msg)), item.get("level"))
            g = groups.setdefault(key, {"message": msg, "level": item.get("level"), "count": 0, "logs": [],
                                        "known": bool(item.get("known")), "note": item.get("note")})
            count = item.get("count")
            g["count"] += int(count) if isinstance(count, (int, float)) else 1
            rel = str(log.relative_to(root))
            if rel not in g["logs"]:
                g["logs"].append(rel)
    return sorted(groups.values(), key=lambda g: (g.get("level") != "error", not g.get("known"), -g["count"],
                                                  g["message"]))


def collect_warnings(root: Path) -> list[dict] | None:
    """Grouped warnings of every log in the run; None when the run has no logs at all."""
    root = Path(root)
    logs = run_logs(root)
    if not logs:
        return None
    via = _from_logscan(root, logs)
    if via is not None:
        return via
    groups: dict[str, dict] = {}
    for log in logs:
        rel = str(log.relative_to(root))
        for key, msg in grep_warnings(log):
            g = groups.setdefault(key, {"message": msg, "level": msg.split(" ", 1)[0].lower(), "count": 0,
                                        "logs": [], "known": False, "note": None})
            g["count"] += 1
            if rel not in g["logs"]:
                g["logs"].append(rel)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["message"]))
