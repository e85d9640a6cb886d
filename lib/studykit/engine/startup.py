"""What one engine start costs, in vLLM's own words.

`startup_breakdown(log)` reads a `vllm serve` log or a `vllm bench latency|throughput` log (those start an engine
too) and returns the seconds vLLM itself printed for each part of the start it reports:

    weights_load_s       "Loading weights took X seconds"                  (model loader)
    model_init_s         "Initializing model took X seconds"               (building the modules, before weights)
    model_load_s         "Model loading took G GiB memory and X seconds"   (GPU/NPU model runners; not on CPU)
    model_load_gib       G of the line above, or "Loading model weights took G GB" (older vllm-ascend)
    profiling_s          "Initial profiling/warmup run took X s" / "Memory profiling takes X seconds"
    torch_compile_s      "torch.compile took|takes X s in total", else the "(compilation: X s)" of the init line
    graph_capture_s      "Graph capturing finished in X secs[, took G GiB]" (CUDA / ACL graphs)
    graph_capture_gib    G of the line above
    engine_init_s        "init engine (profile, create kv cache, warmup model) took X s|seconds"
    log_span_s           first timestamped line to the ready line (see log_span_end), from log timestamps
    process_first_log_s  per process vLLM names in its prefix ("APIServer", "EngineCore", "Worker", "Worker_TP1"):
                         seconds from the first log line to that process's first line. Each process imports vLLM
                         before it logs, so the gaps show how much of a start goes to spawning and importing

A line that is not in the log leaves its field None: this never estimates a part vLLM did not report. Where several
ranks or data-parallel engines print the same line, the largest value is kept, since the start waits for the
slowest. The log span starts at vLLM's first log line, which comes after Python has imported vLLM (about 20 s on
the 2-core CPU host), so it is shorter than the wall time from process start; pass `started_at` to get that too
(`process_to_ready_s`). Log timestamps have one-second resolution and no year or zone: they are read in this
machine's local zone, which is right when the parse runs where the log was written.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from studykit.engine import vllm_log

_NUM = r"(\d+(?:\.\d+)?)"

# field -> the wordings vLLM versions use for it; group 1 holds the value unless _SECONDS_GROUP says otherwise.
_SECONDS_LINES: dict[str, tuple[re.Pattern, ...]] = {
    "weights_load_s": (re.compile(rf"\bLoading weights took {_NUM} seconds"),),
    "model_init_s": (re.compile(rf"\bInitializing model took {_NUM} seconds"),),
    "model_load_s": (re.compile(rf"\bModel loading took {_NUM} ?GiB(?: memory)? and {_NUM} seconds"),),
    "profiling_s": (re.compile(rf"Initial profiling/warmup run took {_NUM} s\b"),
                    re.compile(rf"\bMemory profiling takes {_NUM} seconds")),
    "torch_compile_s": (re.compile(rf"\btorch\.compile (?:took|takes) {_NUM} s in total"),),
    # case-sensitive on purpose: the multimodal encoder's "Encoder graph capturing finished" is another part
    "graph_capture_s": (re.compile(rf"\bGraph capturing finished in {_NUM} secs?"),),
    "engine_init_s": (re.compile(rf"init engine \(profile, create kv cache, warmup model\) took {_NUM} (?:s|seconds)\b"),),
}
# Which regex group holds the seconds, where it is not group 1.
_SECONDS_GROUP = {"model_load_s": 2}
_GIB_LINES: dict[str, tuple[re.Pattern, ...]] = {
    "model_load_gib": (re.compile(rf"\bModel loading took {_NUM} ?GiB"),
                       # older vllm-ascend model_runner_v1: bytes / 2**30, printed as "GB"
                       re.compile(rf"\bLoading model weights took {_NUM} ?GB")),
    "graph_capture_gib": (re.compile(rf"\bGraph capturing finished in {_NUM} secs?, took {_NUM} GiB"),),
}
_GIB_GROUP = {"graph_capture_gib": 2}
_INIT_COMPILATION = re.compile(rf"init engine \(profile, create kv cache, warmup model\) took {_NUM} s "
                               rf"\(compilation: {_NUM} s")

# Ready lines, in the order of preference: a server is ready when uvicorn has started (that line has no
# timestamp of its own: the last vLLM timestamp before it stands for it); an offline engine (bench latency or
# throughput) is ready when the engine core finished its init.
_READY = (
    ("application startup complete", re.compile(r"Application startup complete")),
    ("starting vllm server", re.compile(r"Starting vLLM (?:API )?server\b")),
    ("init engine", _SECONDS_LINES["engine_init_s"][0]),
)


def _largest(lines: list[str], patterns: tuple[re.Pattern, ...], group: int) -> float | None:
    found = [float(m.group(group)) for line in lines for p in patterns if (m := p.search(line))]
    return max(found) if found else None


def startup_breakdown(log_path: str | Path, started_at: datetime | None = None) -> dict[str, Any]:
    """Seconds vLLM reports for one engine start in `log_path` (fields in the module doc; None when not logged).

    `started_at`: when the process was started (an aware datetime, e.g. a command's started_utc); adds
    `process_to_first_log_s` (Python importing vLLM before it logs) and `process_to_ready_s`, the wall time from
    the start to the ready line."""
    path = Path(log_path)
    if not path.is_file():
        raise FileNotFoundError(f"startup_breakdown: no log file at {path}")
    lines = [vllm_log.ANSI.sub("", line) for line in path.read_text(errors="replace").splitlines()]
    out: dict[str, Any] = {"log": str(path)}
    for name, patterns in _SECONDS_LINES.items():
        out[name] = _largest(lines, patterns, _SECONDS_GROUP.get(name, 1))
    for name, patterns in _GIB_LINES.items():
        out[name] = _largest(lines, patterns, _GIB_GROUP.get(name, 1))
    if out["torch_compile_s"] is None:
        out["torch_compile_s"] = _largest(lines, (_INIT_COMPILATION,), 2)

    first_stamp = last_stamp = None
    ready_stamps: dict[str, datetime] = {}
    process_first: dict[str, datetime] = {}
    for line in lines:
        parsed = vllm_log.parse(line)
        if parsed is not None:
            # 2000 is a leap year, so a 02-29 stamp is a date; only differences between stamps are used.
            last_stamp = stamp = parsed.local_time(2000)
            first_stamp = first_stamp or stamp
            if parsed.process:
                process_first.setdefault(parsed.process, stamp)
        for marker, regex in _READY:
            if marker not in ready_stamps and last_stamp is not None and regex.search(line):
                ready_stamps[marker] = last_stamp
    ready_end = next((marker for marker, _ in _READY if marker in ready_stamps), None)
    ready_stamp = ready_stamps.get(ready_end)
    out["log_span_end"] = ready_end
    out["log_span_s"] = _span_seconds(first_stamp, ready_stamp)
    out["process_first_log_s"] = {name: _span_seconds(first_stamp, t) for name, t in process_first.items()} or None
    out["process_to_first_log_s"] = out["process_to_ready_s"] = None
    if started_at is not None:
        for key, stamp in (("process_to_first_log_s", first_stamp), ("process_to_ready_s", ready_stamp)):
            if stamp is not None:
                out[key] = round((_near(stamp, started_at) - started_at).total_seconds(), 3)
    return out


def _near(stamp: datetime, started_at: datetime) -> datetime:
    """A log stamp (no year, this machine's zone) as an aware time, in the year that puts it nearest started_at
    (a start on 12-31 may be ready on 01-01)."""
    year = started_at.astimezone().year
    candidates = []
    for y in (year - 1, year, year + 1):
        try:
            candidates.append(stamp.replace(year=y).astimezone())
        except ValueError:  # 02-29 outside a leap year
            continue
    return min(candidates, key=lambda t: abs((t - started_at).total_seconds()))


def _span_seconds(first: datetime | None, last: datetime | None) -> float | None:
    if first is None or last is None:
        return None
    if last < first:  # the log crossed New Year
        last += timedelta(days=366)
    return (last - first).total_seconds()


ENGINE_BENCHES = ("latency", "throughput")  # `vllm bench serve` is a client of a server, not an engine


def engine_kind(record: dict[str, Any]) -> str | None:
    """'serve' or 'bench latency' / 'bench throughput' when a journaled command starts an engine, else None."""
    from studykit.evidence.journal import LAUNCHER_MODULE

    argv = record.get("argv") or []
    if LAUNCHER_MODULE not in argv:
        return None
    sub = argv[argv.index(LAUNCHER_MODULE) + 1:]
    if sub[:1] == ["serve"]:
        return "serve"
    if len(sub) >= 2 and sub[0] == "bench" and sub[1] in ENGINE_BENCHES:
        return f"bench {sub[1]}"
    return None


def engine_starts(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per engine start in the run's commands.jsonl, in start order: stage, label, kind, seconds to ready
    (a server: the kit's process start to /health; a bench: process start to vLLM's init-engine line) and the
    parts vLLM's own log lines give. Read from the journal and the logs: nothing is measured here."""
    from studykit.evidence.journal import parse_utc, read_commands

    run_dir = Path(run_dir)
    rows = []
    for rec in read_commands(run_dir):
        kind = engine_kind(rec)
        if kind is None:
            continue
        log = Path(rec["log"]) if rec.get("log") else None
        if log is not None and not log.is_absolute():
            log = run_dir / log
        started = parse_utc(rec["started_utc"])
        parts = startup_breakdown(log, started_at=started) if log is not None and log.is_file() else {}
        if kind == "serve":
            ready_s, how = (rec.get("extra") or {}).get("ready_seconds"), "process start to /health"
        else:
            ready_s, how = parts.get("process_to_ready_s"), "process start to vLLM's init-engine line"
        firsts = parts.get("process_first_log_s") or {}
        rows.append({"stage": rec["stage"], "label": rec["label"], "kind": kind, "ready_s": ready_s, "how": how,
                     "command_s": rec.get("seconds"), "shared_by": (rec.get("extra") or {}).get("shared_by"),
                     "to_first_log_s": parts.get("process_to_first_log_s"),
                     "worker_first_log_s": max(firsts.values()) if firsts else None,
                     **{k: parts.get(k) for k in STARTUP_PARTS}})
    return rows


STARTUP_PARTS = ("weights_load_s", "engine_init_s", "graph_capture_s", "torch_compile_s")
