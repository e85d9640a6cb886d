"""The profile stage: its server command (the study's, plus vLLM's profiler config), the opt-in registry fact, the
streamed timing and overhead by hand, energy rows on recorded npu-smi power samples and on this host (not_run with
the reason), its checks fed a passing result built on a real vLLM-profiler trace and a wrong one each, and its
§5.5 part cell by cell. The stage against a real server: test_profile_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import DEFAULT_PARAMS, by_id, tiny_study, typed_result
from studykit.energy import rapl_not_run, telemetry_energy
from studykit.engine import cmdline
from studykit.params import load_study
from studykit.stages.profile import checks
from studykit.stages.profile.params import ProfileParams
from studykit.stages.profile.params import window_order
from studykit.stages.profile.stage import (concurrencies, new_outputs, overhead, plan, profiler_config,
                                           request_timing, saturated_batch, spread, verdict)
from studykit.stages.profile.trace import parse_trace
from test_energy import RECORDED, samples_at
from test_profile_parsers import PREFILL, STEP, record_trace

NO_RAPL = "this host exposes no RAPL power: /sys/class/powercap does not exist"


# --- the plan and the registry ---

def test_plan_is_the_study_server_plus_the_profiler(tmp_path):
    study = load_study(tiny_study(tmp_path, {"stages": ["profile"]}))
    run = tmp_path / "run"
    steps = plan(study, Path("/models/m"), run, 8123)
    server = steps[0]
    assert server.kind == "server" and server.env == {"VLLM_CUSTOM_SCOPES_FOR_PROFILING": "1"}
    argv = server.argv
    i = argv.index("--profiler-config")
    cfg = json.loads(argv[i + 1])
    assert cfg == {"profiler": "torch", "torch_profiler_dir": str(run / "raw" / "profile"),
                   "torch_profiler_with_stack": False, "ignore_frontend": True}
    # the same server command as the other stages', the profiler flag added
    assert argv[:i] + argv[i + 2:] == cmdline.serve_argv(study, Path("/models/m"), 8123)
    # the field names are vLLM's: its own config class accepts them
    from vllm.config import ProfilerConfig

    assert ProfilerConfig(**cfg).profiler == "torch"
    # the default windows: batch 1 and serve's saturated batch (20 prompts at once, max_num_seqs 16 of them run)
    assert [s.label for s in steps[1:]] == ["window-c1", "profiled-c1", "window-c16", "profiled-c16"]
    assert '"profile_prefix": "c16"' in steps[4].text and "/stop_profile" in steps[4].text
    assert "the windows off on on off" in steps[3].text and "capped at model.max_num_seqs 16" in steps[3].text


def serve_json(run: Path, runs: list[dict]) -> None:
    (run / "results").mkdir(parents=True, exist_ok=True)
    (run / "results" / "serve.json").write_text(json.dumps({"runs": runs}))


def test_saturated_batch_comes_from_serve(tmp_path):
    recorded = json.loads((Path(__file__).parents[1] / "data" / "bench" / "serve-vllm-cpu-0.32.json").read_text())
    # vLLM's own serve JSON (rate inf, 10 prompts): 10 requests in flight
    assert recorded["request_rate"] == "inf" and recorded["max_concurrent_requests"] == 10
    study = load_study(tiny_study(tmp_path, {"stages": ["profile"]}))
    run = tmp_path / "run"
    # before serve has run: serve.num_prompts 20, capped at max_num_seqs 16
    assert saturated_batch(study, run)[0] == 16
    serve_json(run, [{"request_rate": "inf", "max_concurrency": None,
                      "max_concurrent_requests": recorded["max_concurrent_requests"]},
                     {"request_rate": "5.0", "max_concurrency": None, "max_concurrent_requests": 3},
                     {"request_rate": "inf", "max_concurrency": 1, "max_concurrent_requests": 1}])
    n, where = saturated_batch(study, run)
    assert n == 10 and where.startswith("serve's saturated point (rate inf): max_concurrent_requests 10")
    assert concurrencies(study, run) == [(1, "params"), (10, where)]
    # more in flight than the engine batches: the engine's batch
    serve_json(run, [{"request_rate": "inf", "max_concurrency": None, "max_concurrent_requests": 20}])
    assert saturated_batch(study, run) == (16, "serve's saturated point (rate inf): max_concurrent_requests 20 in "
                                               "results/serve.json, capped at model.max_num_seqs 16")
    # a number equal to the saturated batch is one window
    wide = load_study(tiny_study(tmp_path, {"stages": ["profile"], "profile": {"concurrency": [16, "saturated"]}}))
    assert [c for c, _ in concurrencies(wide, run)] == [16]


def test_window_order_is_balanced():
    assert window_order(1) == ["off", "on"]
    assert window_order(2) == ["off", "on", "on", "off"]
    assert window_order(4) == ["off", "on", "on", "off"] * 2
    # a drift linear in the window's position adds the same to both kinds' mean
    pos = {k: [i for i, o in enumerate(window_order(4)) if o == k] for k in ("off", "on")}
    assert sum(pos["off"]) / 4 == sum(pos["on"]) / 4 == 3.5


def test_a_windows_outputs_are_what_appeared_during_it(tmp_path):
    raw = tmp_path / "profile"
    raw.mkdir()
    # vllm-ascend keeps the first window's trace name for later windows: the name cannot tell windows apart
    (raw / "c1_dp0_pp0_tp0_dcp0_ep0_rank0.1.pt.trace.json.gz").write_bytes(b"")
    before = {raw / "c1_dp0_pp0_tp0_dcp0_ep0_rank0.1.pt.trace.json.gz"}
    (raw / "c1_dp0_pp0_tp0_dcp0_ep0_rank1.2.pt.trace.json.gz").write_bytes(b"")
    (raw / "c1_dp0_pp0_tp0_dcp0_ep0_rank0.2.pt.trace.json.gz").write_bytes(b"")
    assert [f.name for f in new_outputs(raw, "cpu", before, wait_s=0)] == [
        "c1_dp0_pp0_tp0_dcp0_ep0_rank0.2.pt.trace.json.gz", "c1_dp0_pp0_tp0_dcp0_ep0_rank1.2.pt.trace.json.gz"]
    # NPU: a *_ascend_pt directory counts once torch_npu has analysed it
    pt = raw / "c16_dp0_pp0_tp0_dcp0_ep0_rank0_20261204_ascend_pt"
    (pt / "ASCEND_PROFILER_OUTPUT").mkdir(parents=True)
    assert new_outputs(raw, "npu", set(), wait_s=0) == [pt]  # the deadline passed: what is there
    (pt / "ASCEND_PROFILER_OUTPUT" / "step_trace_time.csv").write_text("Step,Computing\n")
    assert new_outputs(raw, "npu", set(), wait_s=5) == [pt]


def test_profile_is_opt_in():
    from studykit import stages

    assert "profile" in stages.STAGE_ORDER and stages.OPT_IN == ("profile",)
    assert "profile" not in load_study(DEFAULT_PARAMS).stages
    assert list(stages.DEFAULT_STAGES) == [s for s in stages.STAGE_ORDER if s != "profile"]


def test_a_study_may_list_profile(tmp_path):
    study = load_study(tiny_study(tmp_path, {"stages": ["deploy", "profile"], "profile": {"concurrency": [4, 1]}}))
    assert study.stages == ["deploy", "profile"] and study.profile.concurrency == [1, 4]
    with pytest.raises(Exception, match="each window sends at least 1 request"):
        ProfileParams(concurrency=[0])


# --- timing, overhead, verdict by hand ---

def test_request_timing_by_hand():
    # first chunk 1 token at 0.100 s, then 62 chunks of 1 token and a last of 1: 64 tokens, 63 after the first
    chunks = [(0.1, 1)] + [(0.1 + 0.04 * k, 1) for k in range(1, 64)]
    t = request_timing({"chunks": chunks, "usage": {"completion_tokens": 64}})
    assert t["output_tokens"] == 64 and t["ttft_s"] == 0.1
    assert t["ms_per_output_token"] == pytest.approx(0.04 * 63 * 1000 / 63)
    # a chunk carrying two tokens: the tokens after the first chunk still count one by one
    t2 = request_timing({"chunks": [(0.2, 2), (0.5, 2)], "usage": {"completion_tokens": 4}})
    assert t2["ms_per_output_token"] == pytest.approx(300 / 2)
    with pytest.raises(RuntimeError, match="completion_tokens"):
        request_timing({"chunks": chunks, "usage": None})


def test_overhead_spread_and_verdict():
    assert overhead(40.0, 50.0) == 0.25
    assert spread([{"ms_per_output_token": 40.0}, {"ms_per_output_token": 44.0}]) == pytest.approx(4 / 42)
    assert spread([{"ms_per_output_token": 40.0}]) is None
    assert verdict(0.51, 0.5) == "host-bound" and verdict(0.5, 0.5) == "device-bound"


# --- energy ---

def test_energy_on_recorded_npu_smi_samples():
    # npu0_0 99.6, 78.0, 99.6 W at 0, 0.5, 1 s (910B2, 910ProB, 910B2 tables); npu1_0 only in the 910ProB table
    series = samples_at([0.0, 0.5, 1.0], [RECORDED[0], RECORDED[1], RECORDED[0]])
    row = telemetry_energy({"series": series, "window_s": [0.0, 1.0]}, 40)
    e = row["energy"]
    pts = [(s["t_s"], s["npu0_0_power_w"]) for s in series]
    expected = float(np.trapezoid([p for _, p in pts], [t for t, _ in pts]))  # 88.8 J
    assert e["joules"] == pytest.approx(expected) and e["joules_per_token"] == pytest.approx(expected / 40)
    assert e["source"] == "npu-smi power_w" and e["coverage"] == pytest.approx(1.0)
    # a window with no sample inside: not_run with the reason
    assert "fewer than two power samples" in telemetry_energy({"series": series, "window_s": [5.0, 6.0]},
                                                               40)["energy_not_run"]


def test_energy_on_this_host():
    reason = rapl_not_run()
    assert reason == NO_RAPL
    assert telemetry_energy({"platform": "cpu", "series": [{"t_s": 0.0, "cpu_percent": 90.0}],
                             "window_s": [0.0, 1.0]}, 64) == {
        "energy_not_run": reason}


# --- checks ---

@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    """A trace vLLM's profiler wrapper wrote (test_profile_parsers.record_trace): a prefill, then 9 decode steps
    (8 close a period)."""
    path, _, _ = record_trace(tmp_path_factory.mktemp("trace"), [PREFILL] + [STEP] * 9, forward_scope=True,
                              with_stack=False)
    return path


def timing(ms: float, tokens: int = 64, n: int = 1) -> dict:
    req = {"output_tokens": tokens, "ttft_s": 0.1, "last_token_s": 0.1 + ms * (tokens - 1) / 1000,
           "ms_per_output_token": ms}
    return {"requests": [dict(req) for _ in range(n)], "wall_s": 3.0, "output_tokens": tokens * n,
            "ms_per_output_token": ms}


def profile_data(trace: Path, run: Path) -> tuple[ProfileParams, dict]:
    p = ProfileParams(concurrency=[1], output_len=64, min_decode_steps=8)
    split = parse_trace(trace)
    cfg = profiler_config(run / "raw" / "profile")
    argv = ["vllm", "serve", "m", "--profiler-config", json.dumps(cfg)]
    data = {"params": p.model_dump(), "server": "profile-server", "profiler_config": cfg,
            "commands": [{"label": "profile-server", "argv": argv, "command": " ".join(argv)}],
            "idle_not_run": NO_RAPL,
            # the first unprofiled window's telemetry, as the stage records it on this host
            "telemetry": [{"label": "c1", "platform": "cpu", "series": [{"t_s": 0.0, "cpu_percent": 95.0}],
                           "window_s": [0.0, 3.0], "energy_not_run": NO_RAPL}],
            "windows": [{"concurrency": 1, "order": ["off", "on", "on", "off"],
                         "unprofiled": [timing(38.0), timing(42.0)],
                         "profiled": [{**timing(48.0), "trace_files": [str(trace)]}, timing(52.0)],
                         "ms_per_output_token_off": 40.0, "ms_per_output_token_on": 50.0, "overhead": 0.25,
                         "spread_off": 0.1, "split": split.model_dump(),
                         "verdict": verdict(split.outside_share, 0.5), "energy_not_run": NO_RAPL}]}
    return p, data


def run_checks(trace, tmp_path, edit=None, p_changes=None):
    p, data = profile_data(trace, tmp_path / "run")
    if edit:
        edit(data)
    if p_changes:
        p = p.model_copy(update=p_changes)
    return checks.checks(p, typed_result("profile", data))


def test_a_good_result_passes(trace, tmp_path):
    res = run_checks(trace, tmp_path)
    assert {(c.id, c.status) for c in res} == {
        ("profile.profiler_enabled", "passed"), ("profile.tokens_as_requested", "passed"),
        ("profile.trace_parsed", "passed"), ("profile.enough_decode_steps", "passed"),
        ("profile.split_adds_up", "passed"), ("profile.overhead_measured", "passed"),
        ("profile.overhead_small", "passed"), ("profile.energy_per_token", "not_run")}, [(c.id, c.detail) for c in res]
    (e,) = by_id(res, "profile.energy_per_token", "c1")
    assert e.detail == NO_RAPL


def test_profiler_flag_missing_or_elsewhere_fails(trace, tmp_path):
    def elsewhere(d):
        d["commands"][0]["argv"][-1] = json.dumps({"profiler": "torch", "torch_profiler_dir": "/tmp/x"})

    def missing(d):
        d["commands"][0]["argv"] = ["vllm", "serve", "m"]
    for edit in (elsewhere, missing):
        (c,) = by_id(run_checks(trace, tmp_path, edit), "profile.profiler_enabled", None)
        assert c.status == "failed", c.detail


def test_short_request_fails(trace, tmp_path):
    def short(d):
        d["windows"][0]["profiled"][1]["requests"][0]["output_tokens"] = 63
    (c,) = by_id(run_checks(trace, tmp_path, short), "profile.tokens_as_requested", "c1")
    assert c.status == "failed" and "profiled 2: [63]" in c.detail


def test_missing_trace_fails_and_the_rest_does_not_run(trace, tmp_path):
    def no_trace(d):
        d["windows"][0].update(split=None, verdict=None, split_error="the profiler wrote nothing for this window "
                                                                     "within 120 s")
        d["windows"][0]["profiled"][0]["trace_files"] = []
    res = run_checks(trace, tmp_path, no_trace)
    assert by_id(res, "profile.trace_parsed", "c1")[0].status == "failed"
    assert by_id(res, "profile.enough_decode_steps", "c1")[0].status == "not_run"
    assert by_id(res, "profile.split_adds_up", "c1")[0].status == "not_run"


def test_too_few_decode_steps_fails(trace, tmp_path):
    (c,) = by_id(run_checks(trace, tmp_path, p_changes={"min_decode_steps": 9}), "profile.enough_decode_steps", "c1")
    assert c.status == "failed" and c.detail == "8 decode steps, at least 9 wanted"


def test_a_step_that_does_not_add_up_fails(trace, tmp_path):
    def off(d):
        d["windows"][0]["split"]["steps"][3]["outside_model_ms"] += 0.5
    (c,) = by_id(run_checks(trace, tmp_path, off), "profile.split_adds_up", "c1")
    assert c.status == "failed" and c.detail == "steps [3] do not add up"


def test_overhead_missing_or_not_the_ratio_fails(trace, tmp_path):
    for value in (None, 0.3):
        def set_overhead(d, value=value):
            d["windows"][0]["overhead"] = value
        (c,) = by_id(run_checks(trace, tmp_path, set_overhead), "profile.overhead_measured", "c1")
        assert c.status == "failed", value

    def one_window_slower(d):  # the mean over the windows, not the first of each kind
        d["windows"][0]["profiled"][1]["ms_per_output_token"] = 60.0
    (c,) = by_id(run_checks(trace, tmp_path, one_window_slower), "profile.overhead_measured", "c1")
    assert c.status == "failed" and c.expected == pytest.approx((54 - 40) / 40)


def test_overhead_too_large_fails(trace, tmp_path):
    # windows 38, 42 (off) and 48, 52 ms (on): spreads 4/40 = 10 % and 4/50 = 8 %; overhead 25 %
    (ok,) = by_id(run_checks(trace, tmp_path), "profile.overhead_small", "c1")
    assert ok.status == "passed" and ok.detail == ("overhead 25.0 %, at most ±25 % beyond the host's own spread "
                                                   "10.0 % (the larger of the two kinds of window)")
    # 25 % against 16 %: 9 points over, within the 10 % the host moved by itself
    (c,) = by_id(run_checks(trace, tmp_path, p_changes={"max_overhead": 0.16}), "profile.overhead_small", "c1")
    assert c.status == "passed"
    # 25 % against 14 %: 11 points over, more than the host's 10 %
    (c,) = by_id(run_checks(trace, tmp_path, p_changes={"max_overhead": 0.14}), "profile.overhead_small", "c1")
    assert c.status == "failed" and c.detail.startswith("overhead 25.0 %, at most ±14 %")

    def quiet_host(d):  # one window of each kind: no spread to excuse anything
        w = d["windows"][0]
        w.update(order=["off", "on"], unprofiled=w["unprofiled"][:1], profiled=w["profiled"][:1], overhead=0.5)
        w["unprofiled"][0]["ms_per_output_token"], w["profiled"][0]["ms_per_output_token"] = 40.0, 60.0
    (c,) = by_id(run_checks(trace, tmp_path, quiet_host), "profile.overhead_small", "c1")
    assert c.status == "failed" and "own spread 0.0 %" in c.detail


def test_steps_not_marked_decode_do_not_count_as_decode(trace, tmp_path):
    from studykit.stages.profile.npu import parse_npu_profile

    npu = parse_npu_profile(Path(__file__).parents[1] / "data" / "profile" / "npu-mfu-analyzer-rank0")

    def on_npu(d):
        d["windows"][0]["split"] = npu.model_dump()
    (c,) = by_id(run_checks(trace, tmp_path, on_npu), "profile.enough_decode_steps", "c1")
    assert c.status == "not_run" and "does not say which steps decode" in c.detail


def test_energy_measured_passes_and_a_wrong_one_fails(trace, tmp_path):
    series = samples_at([0.0, 0.5, 1.0], [RECORDED[0], RECORDED[1], RECORDED[0]])
    energy = telemetry_energy({"series": series, "window_s": [0.0, 1.0]}, 64)["energy"]

    def measured(d):
        d["windows"][0].update(energy=energy, energy_not_run=None)

    def wrong(d):
        measured(d)
        d["windows"][0]["energy"] = {**energy, "joules_per_token": energy["joules_per_token"] * 2}
    (ok,) = by_id(run_checks(trace, tmp_path, measured), "profile.energy_per_token", "c1")
    assert ok.status == "passed" and ok.detail.endswith("J/token, 100.0 % of the window sampled (npu-smi power_w); "
                                                        "the stage counted 64 tokens, at least 80 % sampled wanted")
    (bad,) = by_id(run_checks(trace, tmp_path, wrong), "profile.energy_per_token", "c1")
    assert bad.status == "failed"


def test_every_check_detail_has_a_zh_template(trace, tmp_path):
    from studykit.report.check_text import zh_detail
    from studykit.stages.profile.npu import parse_npu_profile

    res = run_checks(trace, tmp_path)
    res += run_checks(trace, tmp_path, p_changes={"min_decode_steps": 9, "max_overhead": 0.1})
    res += run_checks(trace, tmp_path, lambda d: d["windows"][0].update(
        split=parse_npu_profile(Path(__file__).parents[1] / "data" / "profile" / "npu-mfu-analyzer-rank0").model_dump()))
    assert [(c.id, c.detail) for c in res if zh_detail(c.id, c.detail) is None] == []


# --- the report's §5.5 part ---

def report_part(trace: Path, tmp_path: Path, lang: str) -> str:
    from studykit.report.blocks import Ctx
    from studykit.report.model import load_run
    from studykit.stages.profile.section import why

    run = tmp_path / f"run-{lang}"
    (run / "results").mkdir(parents=True)
    p, data = profile_data(trace, run)
    result = typed_result("profile", data)
    result.checks = checks.checks(p, result)
    (run / "results" / "profile.json").write_text(result.model_dump_json())
    study = yaml.safe_load(DEFAULT_PARAMS.read_text())
    study["stages"] = ["profile"]
    (run / "params.yaml").write_text(yaml.safe_dump(study))
    (run / "run.json").write_text(json.dumps({"requested_stages": ["profile"]}))
    ctx = Ctx(load_run(run), lang, {})
    why(ctx)
    return ctx.md.text()


def md_tables(text: str) -> list[list[list[str]]]:
    out, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            out.append(block)
            block = []
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_report_part_cells(trace, tmp_path, lang):
    split = parse_trace(trace)
    text = report_part(trace, tmp_path, lang)
    split_t, ops_t = md_tables(text)
    pct = lambda x: f"{x * 100:.1f} %"  # noqa: E731
    v = verdict(split.outside_share, 0.5)
    shown_verdict = v if lang == "en" else {"host-bound": "主机侧受限 (host-bound)",
                                            "device-bound": "设备侧受限 (device-bound)"}[v]
    from studykit.report.mdtools import fmt

    assert split_t[1] == ["1", "40.000", "50.000", "25.0 %", "10.0 %", "8", fmt(split.mean_period_ms),
                          fmt(split.mean_in_model_ms), fmt(split.mean_outside_model_ms), fmt(split.mean_idle_ms),
                          pct(split.outside_share), shown_verdict]
    assert [row[0] for row in ops_t[1:]] == [f"`{op.name}`" for op in split.top_ops]
    assert [row[2] for row in ops_t[1:]] == [fmt(op.self_ms) for op in split.top_ops]
    reason = NO_RAPL if lang == "en" else "本机未提供 RAPL 功率:/sys/class/powercap 不存在"
    # no window has an energy: one line with the reason (the bench stages' energy table, studykit.report.blocks)
    assert (f"Energy: not measured. {reason}" if lang == "en" else f"能耗:未测量。{reason}") in text.splitlines()
    if lang == "en":
        assert split_t[0][0] == "Concurrency" and "Host / device" not in text
        assert (f"Concurrency 1: {v}, {pct(split.outside_share)} of a decode step outside the model's forward "
                "(threshold 50.0 %).") in text
        assert "'gpu_model_runner: forward' scope" in text
    else:
        assert split_t[0][0] == "并发" and "在模型前向之外(阈值 50.0 %)" in text


def test_npu_window_is_split_from_torch_npu_output(tmp_path):
    """On Ascend the window's output is a `*_ascend_pt` directory (vllm-ascend's TorchNPUProfilerWrapper through
    torch_npu's tensorboard_trace_handler); the stage reads its step_trace_time.csv. The recorded directory is real
    torch_npu output (tests/data/profile/README.md)."""
    import csv
    import shutil

    from studykit.stages.profile.stage import split_window

    raw = tmp_path / "profile"
    src = Path(__file__).parents[1] / "data" / "profile" / "npu-mfu-analyzer-rank0"
    pt = raw / "c1_dp0_pp0_tp0_dcp0_ep0_rank0_1234_20261204000000000_ascend_pt"
    shutil.copytree(src, pt)
    found = new_outputs(raw, "npu", set(), wait_s=0)
    assert found == [pt]
    out = split_window(found, ProfileParams(concurrency=[1]), "npu")
    split = out["split"]
    with (src / "ASCEND_PROFILER_OUTPUT" / "step_trace_time.csv").open(encoding="utf-8-sig") as fh:
        (row,) = list(csv.DictReader(fh))
    us = {k.strip(): float(v) for k, v in row.items() if k.strip() in ("Computing", "Communication(Not Overlapped)",
                                                                        "Free")}
    inside = (us["Computing"] + us["Communication(Not Overlapped)"]) / 1000
    assert split["source"] == "torch_npu_profiler"
    assert split["mean_in_model_ms"] == pytest.approx(inside, abs=1e-6)
    assert split["mean_outside_model_ms"] == pytest.approx(us["Free"] / 1000, abs=1e-6)
    assert out["verdict"] == verdict(us["Free"] / (us["Free"] + inside * 1000), 0.5)
    # nothing written: said
    assert split_window([], ProfileParams(), "npu") == {
        "split_error": "the profiler wrote nothing for this window within 900 s"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_report_says_where_the_saturated_window_came_from(trace, tmp_path, lang, monkeypatch):
    where = ("serve's saturated point (rate inf): max_concurrent_requests 20 in results/serve.json, capped at "
             "model.max_num_seqs 16")
    orig = profile_data

    def saturated(trace, run):
        p, data = orig(trace, run)
        data["windows"][0].update(concurrency_from=where)
        return p, data
    monkeypatch.setitem(globals(), "profile_data", saturated)
    text = report_part(trace, tmp_path, lang)
    assert ("- Concurrency 1 comes from " + where if lang == "en" else
            "- 并发 1 的来源:serve 饱和点(速率 inf)同时在途的请求数 20(results/serve.json),以 model.max_num_seqs 16 为上限") \
        in text.splitlines()
