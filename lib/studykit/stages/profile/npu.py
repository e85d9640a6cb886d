"""Per step, from the torch_npu profiler's analysed output (what vllm-ascend's profiler leaves in
`<dir>/<host>_<pid>_<time>_ascend_pt/ASCEND_PROFILER_OUTPUT/` once analysed): the device's computing,
not-overlapped communication and free time, the operator types with the most device time, and the idle gaps
between kernels. Same record as the CPU trace (trace.ProfileSplit).

Files (all times in microseconds):
- step_trace_time.csv: `[Device_id,]Step,Computing,Communication(Not Overlapped),Overlapped,Communication,Free,
  Stage,...`; one row per profiled step (`Step` is empty when no step was marked). The step is
  Computing + Communication(Not Overlapped) + Free (the `Stage` column of a real file equals that sum).
- op_statistic.csv: `[Device_id,]OP Type,Core Type,Count,Total Time(us),Min Time(us),Avg Time(us),Max Time(us),
  Ratio(%)`.
- kernel_details.csv: one row per device task, `Start Time(us)` (torch_npu ends it with a tab) and `Duration(us)`.
"""

from __future__ import annotations

import csv
from decimal import Decimal, InvalidOperation
from pathlib import Path

from studykit.stages.profile.trace import (KernelGaps, OpTime, ProfileSplit, StepSplit, TraceError, summarize,
                                           top_ops)

STEP_COLUMNS = ("Computing", "Communication(Not Overlapped)", "Free")
OP_COLUMNS = ("OP Type", "Count", "Total Time(us)")
KERNEL_COLUMNS = ("Start Time(us)", "Duration(us)")
GAP_THRESHOLD_US = 1.0


def _rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise TraceError(f"{path}: cannot read as CSV ({type(err).__name__}: {err})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise TraceError(f"{path}: no column {', '.join(repr(c) for c in missing)}; the header is {header or 'empty'}")
    if not rows:
        raise TraceError(f"{path}: a header and no rows")
    return rows


def _num(path: Path, line: int, column: str, value: str) -> Decimal:
    # Decimal: kernel start times are ~1.8e15 µs with three decimals, past what a float keeps exactly
    try:
        out = Decimal(value)
    except InvalidOperation:
        out = None
    if out is None or not out.is_finite():
        raise TraceError(f"{path} line {line}: {column} is {value!r}, not a number")
    return out


def parse_step_trace(path: str | Path) -> list[StepSplit]:
    """step_trace_time.csv: in the model = computing + communication not overlapped; outside = idle = free."""
    p = Path(path)
    steps = []
    for i, row in enumerate(_rows(p, STEP_COLUMNS)):
        line = i + 2
        computing, comm, free = (float(_num(p, line, c, row[c])) / 1000.0 for c in STEP_COLUMNS)
        device = f"device {row['Device_id']} " if row.get("Device_id") else ""
        name = f"{device}step {row['Step']}" if row.get("Step") else f"{device}all profiled steps (no step marked)"
        steps.append(StepSplit(step=i, name=name, period_ms=round(computing + comm + free, 6),
                               in_model_ms=round(computing + comm, 6), outside_model_ms=round(free, 6),
                               idle_ms=round(free, 6), communication_ms=round(comm, 6)))
    return steps


def parse_op_statistic(path: str | Path, top: int = 10) -> list[OpTime]:
    """op_statistic.csv, by device time; `calls` is its Count (the rows are already per operator type)."""
    p = Path(path)
    total: dict[str, float] = {}
    calls: dict[str, int] = {}
    for i, row in enumerate(_rows(p, OP_COLUMNS)):
        name = row["OP Type"]
        total[name] = total.get(name, 0.0) + float(_num(p, i + 2, "Total Time(us)", row["Total Time(us)"]))
        calls[name] = calls.get(name, 0) + int(_num(p, i + 2, "Count", row["Count"]))
    ranked = top_ops(((name, us) for name, us in total.items()), top)
    return [op.model_copy(update={"calls": calls[op.name]}) for op in ranked]


def parse_kernel_details(path: str | Path, gap_threshold_us: float = GAP_THRESHOLD_US) -> KernelGaps:
    """Device busy (union of kernel intervals) and the gaps between kernels, over the tasks of the file."""
    p = Path(path)
    spans = []
    for i, row in enumerate(_rows(p, KERNEL_COLUMNS)):
        start = _num(p, i + 2, "Start Time(us)", row["Start Time(us)"])
        dur = _num(p, i + 2, "Duration(us)", row["Duration(us)"])
        if dur < 0:
            raise TraceError(f"{p} line {i + 2}: Duration(us) is {dur}, negative")
        spans.append((start, start + dur))
    spans.sort()
    origin = spans[0][0]
    busy = Decimal(0)
    gaps: list[float] = []
    cur_s, cur_e = spans[0]
    for s, e in spans[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            if s - cur_e > Decimal(str(gap_threshold_us)):
                gaps.append(float(s - cur_e))
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    span = max(e for _, e in spans) - origin
    return KernelGaps(kernels=len(spans), span_ms=round(float(span) / 1000.0, 6),
                      busy_ms=round(float(busy) / 1000.0, 6), idle_ms=round(float(span - busy) / 1000.0, 6),
                      gaps=len(gaps), gap_threshold_us=gap_threshold_us,
                      largest_gaps_us=[round(g, 3) for g in sorted(gaps, reverse=True)[:5]])


def output_dir(root: str | Path) -> Path:
    """ASCEND_PROFILER_OUTPUT under `root` (root itself, a `*_ascend_pt` directory, or a directory holding exactly
    one of those)."""
    r = Path(root)
    if r.name == "ASCEND_PROFILER_OUTPUT" and r.is_dir():
        return r
    if (r / "ASCEND_PROFILER_OUTPUT").is_dir():
        return r / "ASCEND_PROFILER_OUTPUT"
    found = sorted(r.glob("*/ASCEND_PROFILER_OUTPUT"))
    if len(found) == 1:
        return found[0]
    raise TraceError(f"{r}: {'several' if found else 'no'} ASCEND_PROFILER_OUTPUT directories "
                     f"({', '.join(str(f) for f in found) or 'the profiler output was not analysed yet'}); "
                     "give the *_ascend_pt directory of one rank")


def parse_npu_profile(root: str | Path, top: int = 10) -> ProfileSplit:
    """step_trace_time.csv (required), op_statistic.csv (top operators) and kernel_details.csv (gaps) when there."""
    out = output_dir(root)
    step_file = out / "step_trace_time.csv"
    if not step_file.is_file():
        raise TraceError(f"{out}: no step_trace_time.csv (torch_npu writes it when it analyses the profile)")
    notes = []
    ops: list[OpTime] = []
    if (out / "op_statistic.csv").is_file():
        ops = parse_op_statistic(out / "op_statistic.csv", top)
    else:
        notes.append("no op_statistic.csv: no top operators")
    gaps = None
    if (out / "kernel_details.csv").is_file():
        gaps = parse_kernel_details(out / "kernel_details.csv")
    else:
        notes.append("no kernel_details.csv: no kernel gaps")
    return summarize("torch_npu_profiler", out, "device time: Computing + Communication(Not Overlapped) of "
                     "step_trace_time.csv; outside the model = Free (the device idle)", parse_step_trace(step_file),
                     ops, "op_statistic.csv: device time per operator type over the profiled window", notes, gaps)
