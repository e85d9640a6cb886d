"""vLLM's log line, read in one place: the start-up breakdown, the warning scan and the shutdown split all use it.

vLLM prints `(EngineCore_DP0 pid=299) INFO 11-26 07:26:48 [file.py:12] message`: the process prefix (absent in
the process that logs first; older versions write `(VllmWorker rank=0 pid=1)`, a child of a child `(pid=3212)`),
the level, the host's local month-day and time without a year (fractions of a second in some versions), where
the line was logged, and the message. Colours wrap the prefix when vLLM writes to a terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# One process prefix with the space after it; `name` is None for a bare "(pid=3212)".
PROCESS_PREFIX = re.compile(r"\((?:(?P<name>[\w.-]+) )?(?:rank=\d+ )?pid=\d+\) ?")
# Searched, not anchored: other prefixes ("(pid=3212) ", "[rank0]: ") or an unfinished progress bar ("....")
# may stand before the level.
_LEVEL_STAMP = re.compile(r"\b(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+"
                          r"(?P<month>\d\d)-(?P<day>\d\d) (?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)(?:\.\d+)?\s+"
                          r"(?:\[(?P<where>[^\]]+)\]\s?)?(?P<message>.*)")


@dataclass(frozen=True)
class VllmLine:
    process: str | None  # "EngineCore_DP0" of the prefix the line starts with; None without one
    level: str           # DEBUG | INFO | WARNING | ERROR | CRITICAL
    month: int
    day: int
    hour: int
    minute: int
    second: int
    where: str | None    # "file.py:12"
    message: str         # after "[where] ", its own indentation kept

    def local_time(self, year: int) -> datetime:
        """The stamp as a naive datetime in `year`: vLLM writes the host's local time and no year, so the caller
        says which year (ValueError for 02-29 outside a leap year)."""
        return datetime(year, self.month, self.day, self.hour, self.minute, self.second)


def parse(line: str) -> VllmLine | None:
    """The parts of a vLLM log line (colours already removed), or None for a line vLLM's logger did not write."""
    m = _LEVEL_STAMP.search(line)
    if m is None:
        return None
    proc = PROCESS_PREFIX.match(line)
    return VllmLine(proc["name"] if proc else None, m["level"], int(m["month"]), int(m["day"]), int(m["hour"]),
                    int(m["minute"]), int(m["second"]), m["where"], m["message"])
