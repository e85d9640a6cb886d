"""What a running stage is doing, on the runner's terminal, while papermill runs the stage's kernel.

The kernel is another process, so the runner watches what the kernel's commands leave on disk: a log file
appearing under logs/ (a vLLM server) or raw/<stage>/ (a bench, lm-eval) is a step starting, its last line is
what the step waits for (vLLM's start-up messages, a tqdm bar), and the command's record in commands.jsonl
naming that log is the step's end. One line per step: rewritten in place on a terminal, plain lines otherwise
(CI logs), there only when a step starts, ends, or every PLAIN_EVERY_S while it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from studykit.engine import vllm_log
from studykit.engine.logscan import strip_prefixes
from studykit.evidence.rundir import RunLayout

POLL_S = 1.0
PLAIN_EVERY_S = 30.0
TAIL_BYTES = 8192
PLAIN_WIDTH = 200
# vLLM's API server says this when /health starts answering: the engine start is over.
SERVER_READY = "Application startup complete"


def last_line(path: Path) -> str:
    """The last non-blank line a terminal would show (tqdm redraws with carriage returns), cut down to its
    message: without process prefixes, vLLM's level, time and file, runs of spaces."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in vllm_log.ANSI.sub("", text).replace("\r", "\n").split("\n") if ln.strip()]
    if not lines:
        return ""
    line = strip_prefixes(lines[-1])
    parsed = vllm_log.parse(line)
    return " ".join((parsed.message if parsed else line).split())


@dataclass
class Step:
    log: Path
    name: str          # run-relative path of its log
    server: bool       # a vLLM server's log (logs/), whose start-up is what it waits for
    started: float     # monotonic, when the log was first seen
    ready: bool = False
    ended: float | None = None
    returncode: int | None = None


class StageProgress:
    """`with StageProgress(run_dir, stage):` around the stage's execution; the thread stops on every exit."""

    def __init__(self, run_dir: str | Path, stage: str, out=None, tty: bool | None = None,
                 clock=time.monotonic, poll_s: float = POLL_S, enabled: bool = True):
        self.enabled = enabled
        self.layout = RunLayout(Path(run_dir))
        self.stage = stage
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.clock = clock
        self.poll_s = poll_s
        self.steps: dict[str, Step] = {}  # by run-relative log path
        self.current: Step | None = None
        self._sizes: dict[Path, int] = {}
        self._snapshot: set[Path] = set()
        self._journal_offset = 0
        self._live = ""          # what the live line shows now (TTY)
        self._printed: tuple[float, str] = (0.0, "")  # last plain line: when, and its text
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what is on disk

    def _logs(self) -> list[Path]:
        found = list(self.layout.logs.glob("*.log")) + list((self.layout.raw / self.stage).glob("**/*.log"))
        return [p for p in found if p.is_file()]

    def _size(self, path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return -1

    def start_snapshot(self) -> None:
        """Logs already there (a shared server's, an earlier attempt's) are not this stage's steps until they
        grow, and commands journaled earlier do not end this stage's steps."""
        self._sizes = {p: self._size(p) for p in self._logs()}
        self._snapshot = set(self._sizes)
        self._journal_offset = self._size(self.layout.commands) if self.layout.commands.exists() else 0

    def _scan(self, now: float) -> None:
        for path in sorted(self._logs(), key=self._size):
            size = self._size(path)
            rel = path.relative_to(self.layout.root).as_posix()
            earlier = path in self._snapshot
            # A log from before the stage (a shared server's) grows with every request a bench of this stage
            # sends: that is the bench's step, so the server's log shows only while nothing else runs.
            if rel not in self.steps and size != self._sizes.get(path) and not (earlier and self._running()):
                self.steps[rel] = Step(path, rel, server=path.parent == self.layout.logs, started=now)
                self.current = self.steps[rel]
            self._sizes[path] = size
        for rec in self._new_commands():
            step = self.steps.get(self._relative(rec["log"])) if rec.get("log") else None
            if step is not None and step.ended is None:
                step.ended = now
                step.returncode = rec.get("returncode")

    def _running(self) -> bool:
        return any(step.ended is None and step.log not in self._snapshot for step in self.steps.values())

    def _relative(self, log: str) -> str | None:
        # the journal names a log by the absolute path the kernel used; the runner may hold a relative one
        try:
            return Path(log).resolve().relative_to(self.layout.root.resolve()).as_posix()
        except (ValueError, OSError):
            return None

    def _new_commands(self) -> list[dict]:
        try:
            with open(self.layout.commands, "rb") as fh:
                fh.seek(self._journal_offset)
                chunk = fh.read()
        except OSError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self._journal_offset += len(complete)
        out = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    # -- what is shown

    def describe(self, step: Step, now: float) -> str:
        tail = last_line(step.log)
        if step.server and not step.ready and SERVER_READY in step.log.read_text(errors="replace"):
            step.ready = True
        if step.ended is not None:
            seconds = step.ended - step.started
            rc = "" if step.returncode in (0, None) else f", exit code {step.returncode}"
            return f"{step.name}: done in {seconds:.0f} s{rc}"
        seconds = now - step.started
        if step.server and not step.ready:
            what = f"engine starting, {seconds:.0f} s"
        else:
            what = f"{seconds:.0f} s"
        return f"{step.name}: {what}" + (f" | {tail}" if tail else "")

    def poll(self) -> None:
        now = self.clock()
        before = self.current
        self._scan(now)
        if before is not None and before is not self.current:
            self._show(self.describe(before, now), final=True)  # the step it replaced keeps its line
        if self.current is not None:
            self._show(self.describe(self.current, now), final=self.current.ended is not None)
            if self.current.ended is not None:
                self.current = None

    def _show(self, text: str, final: bool) -> None:
        line = f"      {text}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.out.write("\r\x1b[K" + line[:width] + ("\n" if final else ""))
            self._live = "" if final else line
        else:
            when, last = self._printed
            now = self.clock()
            if line == last or (not final and when and now - when < PLAIN_EVERY_S and _same_step(line, last)):
                return
            self.out.write(line[:PLAIN_WIDTH] + "\n")
            self._printed = (now, line)
        self.out.flush()

    def finish(self) -> None:
        """The last word on the step still open, then the live line cleared for the runner's own line."""
        self.poll()
        if self.current is not None:
            self._show(self.describe(self.current, self.clock()), final=True)
            self.current = None
        if self.tty and self._live:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._live = ""

    # -- the thread

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a display problem must never fail the stage it watches
                pass

    def __enter__(self) -> "StageProgress":
        if not self.enabled:
            return self
        self.start_snapshot()
        self._thread = threading.Thread(target=self._loop, name=f"progress-{self.stage}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        try:
            self.finish()
        except Exception:  # noqa: BLE001 - as in _loop; and an exception already unwinding must stay the one seen
            pass


def _same_step(a: str, b: str) -> bool:
    return a.split(":", 1)[0] == b.split(":", 1)[0]
