"""The profile stage's parsers.

- CPU: a trace written by vLLM's own profiler wrapper (vllm/profiler/wrapper.py TorchProfilerWrapper, the class the
  worker uses; its file naming, gzip and activities) around a real torch forward, with the step annotation and
  scopes vLLM's worker and model runner put around each step. No vLLM engine runs: the annotation names follow
  gpu_worker.py annotate_profile and gpu_model_runner.py (see trace.py). Expected values come from torch's own
  in-memory profile (FunctionEvent / key_averages), not from the JSON the parser reads.
- NPU: a real torch_npu profiler output published in lishanni/npu-mfu-analyzer (tests/data/profile/README.md).
- Malformed input: small files written here.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from studykit.stages.profile.npu import (output_dir, parse_kernel_details, parse_npu_profile, parse_op_statistic,
                                         parse_step_trace)
from studykit.stages.profile.trace import FORWARD_SCOPE, TraceError, load_events, parse_trace, trace_files

NPU_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "profile" / "npu-mfu-analyzer-rank0"
STEP = "execute_context_0(0)_generation_1(1)"
PREFILL = "execute_context_1(5)_generation_0(0)"


def record_trace(out: Path, steps: list[str], forward_scope: bool, pause_s: float = 0.003, with_stack: bool = True):
    """vLLM's TorchProfilerWrapper around a tiny model; returns the trace path and, from torch's in-memory profile
    (read at once: torch's event objects do not outlive the profiler's session), the events as (name, start µs,
    elapsed µs) by start and key_averages as (name, self µs, count)."""
    torch = pytest.importorskip("torch")
    from vllm.config import ProfilerConfig
    from vllm.profiler.wrapper import TorchProfilerWrapper

    cfg = ProfilerConfig(profiler="torch", torch_profiler_dir=str(out), torch_profiler_with_stack=with_stack)
    wrapper = TorchProfilerWrapper(cfg, worker_name="dp0_pp0_tp0_dcp0_ep0_rank0", local_rank=0,
                                   activities=["CPU"])
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.SiLU(), torch.nn.Linear(256, 64))
    x = torch.randn(1, 64)
    wrapper.start()
    for i, name in enumerate(steps):
        wrapper.step()
        with wrapper.annotate_context_manager(name), torch.inference_mode():
            y = x.clone()  # input prep
            scope = torch.profiler.record_function(FORWARD_SCOPE) if forward_scope else None
            if scope:
                scope.__enter__()
            y = model(y)
            if scope:
                scope.__exit__(None, None, None)
        if i < len(steps) - 1:
            time.sleep(pause_s)  # outside the forward: nothing runs (the engine's scheduler would)
            torch.argmax(y)  # the sampler's operator, outside execute_model
    wrapper.stop()
    prof = wrapper.profiler
    events = sorted(((e.name, e.time_range.start, e.time_range.elapsed_us()) for e in prof.events()),
                    key=lambda e: e[1])
    averages = [(a.key, a.self_cpu_time_total, a.count) for a in prof.key_averages()]
    (path,) = trace_files(out)
    return path, events, averages


@pytest.fixture(scope="module")
def cpu_trace(tmp_path_factory):
    # without Python stacks: torch 2.13 cannot always read back the in-memory events of a with_stack session (a
    # UnicodeDecodeError on an event name), and the expectations come from those events; the trace of
    # test_cpu_without_forward_scope_uses_operator_time keeps vLLM's default (with_stack, python_function events)
    return record_trace(tmp_path_factory.mktemp("trace"), [PREFILL] + [STEP] * 5, forward_scope=True,
                        with_stack=False)


def test_vllm_writes_the_trace_name_the_parser_finds(cpu_trace):
    path = cpu_trace[0]
    assert path.name.startswith("dp0_pp0_tp0_dcp0_ep0_rank0.") and path.name.endswith(".pt.trace.json.gz")


def test_cpu_steps_and_forward_time_match_torch(cpu_trace):
    path, events, _ = cpu_trace
    r = parse_trace(path)
    marks = [e for e in events if e[0] in (STEP, PREFILL)]
    forwards = [e for e in events if e[0] == FORWARD_SCOPE]
    assert [e[0] for e in marks] == [PREFILL] + [STEP] * 5
    # the last step closes no period
    assert [s.name for s in r.steps] == [PREFILL] + [STEP] * 4
    assert [s.decode for s in r.steps] == [False] + [True] * 4
    assert r.steps[0].context_requests == 1 and r.steps[0].context_tokens == 5
    assert r.decode_steps == 4 and r.averaged_over.startswith("4 decode steps")
    for s, mark, nxt, fwd in zip(r.steps, marks, marks[1:], forwards):
        assert s.period_ms == pytest.approx((nxt[1] - mark[1]) / 1000, abs=2e-3)
        assert s.in_model_ms == pytest.approx(fwd[2] / 1000, abs=2e-3)
        assert s.outside_model_ms == pytest.approx(s.period_ms - s.in_model_ms, abs=1e-5)
        # the sleep is outside the model and no operator runs in it
        assert s.outside_model_ms >= 3.0 and s.idle_ms >= 3.0
        assert s.idle_ms <= s.period_ms
    decode = r.steps[1:]
    assert r.mean_in_model_ms == pytest.approx(np.mean([s.in_model_ms for s in decode]), abs=1e-5)
    assert r.outside_share == pytest.approx(np.mean([s.outside_model_ms for s in decode])
                                            / np.mean([s.period_ms for s in decode]), abs=1e-5)
    assert "forward" in r.in_model_basis


def test_cpu_top_ops_match_torch_key_averages(cpu_trace):
    path, _, averages = cpu_trace
    r = parse_trace(path, top=5)
    expected = sorted((a for a in averages if a[0].startswith("aten::")), key=lambda x: -x[1])
    # the trace's ops are all inside the analysed steps (nothing runs after the last one)
    assert [op.name for op in r.top_ops] == [k for k, _, _ in expected[:5]]
    for op, (_, self_us, count) in zip(r.top_ops, expected):
        assert op.self_ms == pytest.approx(self_us / 1000, abs=2e-3)
        assert op.calls == count
    # the workload is a linear layer: its matmul is among the heaviest ops (which of linear and addmm leads in
    # self time differs between hosts)
    assert {"aten::addmm", "aten::linear"} & {op.name for op in r.top_ops[:2]}


def test_cpu_without_forward_scope_uses_operator_time(tmp_path):
    path, events, _ = record_trace(tmp_path, [STEP] * 3, forward_scope=False)
    r = parse_trace(path)
    assert "operator time" in r.in_model_basis
    # vLLM's default with_stack: Python frames are in the trace too, and are not operators
    assert any(e.get("cat") == "python_function" for e in load_events(path))
    marks = [e for e in events if e[0] == STEP]
    for s, mark in zip(r.steps, marks):
        # the operators inside execute_model: some time, never more than the annotation
        assert 0 < s.in_model_ms <= mark[2] / 1000 + 2e-3
        assert s.outside_model_ms >= 3.0


def test_cpu_prefill_only_window_is_refused(tmp_path):
    path, _, _ = record_trace(tmp_path, [PREFILL] * 3, forward_scope=True, pause_s=0)
    with pytest.raises(TraceError, match="none of them decode only"):
        parse_trace(path)


# --- malformed CPU traces (written here) ---

def write_trace(path: Path, events, gz: bool = False) -> Path:
    text = json.dumps(events)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_trace_not_json(tmp_path):
    p = tmp_path / "w.pt.trace.json.gz"
    p.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(TraceError, match="not a Chrome trace JSON"):
        parse_trace(p)


def test_trace_without_events(tmp_path):
    p = write_trace(tmp_path / "w.pt.trace.json", {"schemaVersion": 1})
    with pytest.raises(TraceError, match="traceEvents"):
        parse_trace(p)


def test_trace_without_step_annotations(tmp_path):
    p = write_trace(tmp_path / "w.pt.trace.json", {"traceEvents": [
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": 0, "dur": 5}]}, gz=True)
    with pytest.raises(TraceError, match="no vLLM step annotation"):
        parse_trace(p)


def test_trace_event_without_duration(tmp_path):
    p = write_trace(tmp_path / "w.pt.trace.json", {"traceEvents": [
        {"ph": "X", "cat": "user_annotation", "name": STEP, "pid": 1, "tid": 1, "ts": 0}]})
    with pytest.raises(TraceError, match=r"event 0 .*without a numeric ts and dur"):
        parse_trace(p)


def test_trace_with_one_step_has_no_period(tmp_path):
    p = write_trace(tmp_path / "w.pt.trace.json", {"traceEvents": [
        {"ph": "X", "cat": "user_annotation", "name": STEP, "pid": 1, "tid": 1, "ts": 0, "dur": 10}]})
    with pytest.raises(TraceError, match="no complete step"):
        parse_trace(p)


# --- NPU: the real torch_npu sample ---

def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_npu_step_trace_real_sample():
    row = read_csv(NPU_SAMPLE / "ASCEND_PROFILER_OUTPUT" / "step_trace_time.csv")[0]
    (s,) = parse_step_trace(NPU_SAMPLE / "ASCEND_PROFILER_OUTPUT" / "step_trace_time.csv")
    # the sample's own Stage column is the whole step (computing + not-overlapped communication + free)
    assert s.period_ms == pytest.approx(float(row["Stage"]) / 1000, rel=1e-6)
    assert s.in_model_ms == pytest.approx(640.4225599999939 + 3177.9917200000207, abs=1e-5)
    assert s.idle_ms == s.outside_model_ms == pytest.approx(27566.77242000007, abs=1e-5)
    assert s.communication_ms == pytest.approx(3177.9917200000207, abs=1e-5)
    assert s.name == "device 4 all profiled steps (no step marked)" and s.decode is None


def test_npu_op_statistic_real_sample():
    path = NPU_SAMPLE / "ASCEND_PROFILER_OUTPUT" / "op_statistic.csv"
    rows = read_csv(path)
    ops = parse_op_statistic(path, top=5)
    assert [o.name for o in ops] == ["MatMulV2", "Cast", "ZerosLike", "Mul", "Transpose"]
    assert ops[0].calls == 32689 and ops[0].self_ms == pytest.approx(327.67306)
    # the share computed here agrees with torch_npu's own Ratio(%) column
    ratio = {r["OP Type"]: float(r["Ratio(%)"]) / 100 for r in rows}
    for o in ops:
        assert o.share == pytest.approx(ratio[o.name], abs=2e-5)


def test_npu_kernel_gaps_real_sample():
    path = NPU_SAMPLE / "ASCEND_PROFILER_OUTPUT" / "kernel_details.csv"
    rows = read_csv(path)
    # independent: exact decimals relative to the first start, then numpy on the sorted intervals
    starts = [Decimal(r["Start Time(us)"].strip()) for r in rows]
    base = min(starts)
    s = np.array([float(x - base) for x in starts])
    e = s + np.array([float(r["Duration(us)"]) for r in rows])
    order = np.argsort(s)
    s, e = s[order], e[order]
    run_end = np.maximum.accumulate(e)
    gap = s[1:] - run_end[:-1]
    busy = (e - s).sum() - np.clip(run_end[:-1] - s[1:], 0, None).clip(max=(e - s)[1:]).sum()
    g = parse_kernel_details(path)
    assert g.kernels == 200
    assert g.span_ms == pytest.approx(run_end[-1] / 1000, abs=1e-6)
    assert g.busy_ms == pytest.approx(busy / 1000, abs=1e-5)
    assert g.idle_ms == pytest.approx((run_end[-1] - busy) / 1000, abs=1e-5)
    assert g.gaps == int((gap > 1.0).sum())
    assert g.largest_gaps_us[0] == pytest.approx(gap.max(), abs=1e-3)


def test_npu_profile_real_sample_directory_forms():
    r = parse_npu_profile(NPU_SAMPLE)
    assert r.source == "torch_npu_profiler" and len(r.steps) == 1 and r.decode_steps == 0
    assert r.outside_share == pytest.approx(27566.77242000007 / 31385.18670000008, abs=1e-6)
    assert r.top_ops[0].name == "MatMulV2" and r.kernel_gaps is not None and not r.notes
    assert output_dir(NPU_SAMPLE.parent) == NPU_SAMPLE / "ASCEND_PROFILER_OUTPUT"
    assert parse_npu_profile(NPU_SAMPLE / "ASCEND_PROFILER_OUTPUT") == r


# --- malformed NPU output (written here) ---

def test_npu_step_trace_missing_column(tmp_path):
    p = tmp_path / "step_trace_time.csv"
    p.write_text("Device_id,Step,Computing,Free\n0,1,10,5\n")
    with pytest.raises(TraceError, match=r"no column 'Communication\(Not Overlapped\)'"):
        parse_step_trace(p)


def test_npu_step_trace_not_a_number(tmp_path):
    p = tmp_path / "step_trace_time.csv"
    p.write_text("Step,Computing,Communication(Not Overlapped),Free\n1,10,N/A,5\n")
    with pytest.raises(TraceError, match=r"line 2: Communication\(Not Overlapped\) is 'N/A'"):
        parse_step_trace(p)


def test_npu_step_trace_header_only(tmp_path):
    p = tmp_path / "step_trace_time.csv"
    p.write_text("Step,Computing,Communication(Not Overlapped),Free\n")
    with pytest.raises(TraceError, match="a header and no rows"):
        parse_step_trace(p)


def test_npu_kernel_negative_duration(tmp_path):
    p = tmp_path / "kernel_details.csv"
    p.write_text("Name,Start Time(us),Duration(us)\nA,100.5\t,2\nB,103.0\t,-1\n")
    with pytest.raises(TraceError, match="line 3: Duration.*negative"):
        parse_kernel_details(p)


def test_npu_not_analysed(tmp_path):
    (tmp_path / "host_1_2_ascend_pt" / "FRAMEWORK").mkdir(parents=True)
    with pytest.raises(TraceError, match="no ASCEND_PROFILER_OUTPUT"):
        parse_npu_profile(tmp_path)
