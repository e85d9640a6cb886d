"""The functional stage: its checks fed a real recorded result (the golden run passes) and wrong ones (each fails,
or is not_run with the reason), the engine's flags read from a real start-up log, what `not_applicable` records for
tensor parallelism and multi-modal input, the plan, and a stage whose server fails (what it had is kept)."""

from __future__ import annotations

import json

import pytest

from conftest import DATA, by_id, tiny_study, typed_result
from studykit.stages.functional import checks
from studykit.stages.functional.params import FunctionalParams
from studykit.stages.functional.stage import batched_tokens_budget, engine_config_flags, not_applicable, plan

GOLDEN = DATA / "runs" / "golden"
IDS = ("functional.chunked_prefill", "functional.prefix_caching", "functional.graph_vs_eager",
       "functional.engine_args_match_command")


def functional_results(enabled="True"):
    return {"prefix_caching": {"enabled": enabled, "hit_tokens": 768, "query_tokens": 1056,
                               "expected_hit_tokens": 768, "requests": 4, "prefix_tokens": 256,
                               "prefix_full_blocks": 2, "block_size": 128, "working": True, "why_no_hits": None},
            # 529 tokens at 256 per step: ceil(529 / 256) = 3 prefill steps, then 3 decode steps for 4 output
            # tokens; vLLM counts the prompt's 529 and the 4 generated tokens (the first in the last prefill step)
            "chunked_prefill": {"completed": True, "prompt_tokens": 529, "max_num_batched_tokens": 256,
                                "output_tokens": 4, "engine_steps": 6, "engine_step_tokens": 533,
                                "prefill_steps": 3},
            "graph_vs_eager": {"status": "not applicable", "reason": "graph compilation on CPU takes minutes"}}


def run_checks(data):
    return checks.checks(FunctionalParams(), typed_result("functional", data))


def test_recorded_functional_passes_and_the_hits_are_whole_blocks():
    doc = json.loads((GOLDEN / "results" / "functional.json").read_text())
    data = {k: doc[k] for k in ("params", "not_applicable", "engine_flags", "prefix_caching", "chunked_prefill",
                                "graph_vs_eager", "engine_args") if k in doc}
    # the recorder wrote the model directory as "model" where it stood alone (vLLM's logged args), not inside the
    # command line: put back what golden.json says it was
    model_dir = json.loads((GOLDEN / "golden.json").read_text())["model_dir"]
    logged = data["engine_args"]["logged"]
    logged.update({k: model_dir for k in ("model", "model_tag") if logged.get(k) == "model"})
    res = checks.checks(FunctionalParams(**doc["params"]), typed_result("functional", data))
    assert [c.id for c in res] == list(IDS)
    # the golden run's counters: one prefill step counted (vLLM 0.32), so chunking is not shown, not passed
    assert [c.status for c in res] == ["not_run", "passed", "not_run", "passed"], [(c.id, c.detail) for c in res]
    pc = doc["prefix_caching"]
    # 3 later requests reuse the 256-token prefix's whole 128-token blocks: 3 x 2 x 128
    assert by_id(res, "functional.prefix_caching")[0].expected == (pc["requests"] - 1) * (256 // 128) * 128 == 768
    assert "minutes" in by_id(res, "functional.graph_vs_eager")[0].detail


def test_functional_checks_fail_and_not_run():
    res = run_checks(functional_results())
    assert [c.status for c in res] == ["passed", "passed", "not_run", "not_run"]
    assert "minutes" in res[2].detail
    bad = functional_results()
    bad["prefix_caching"]["hit_tokens"] = 0
    bad["chunked_prefill"]["completed"] = False
    assert [c.status for c in run_checks(bad)][:2] == ["failed", "failed"]
    (off,) = by_id(run_checks(functional_results(enabled="False")), "functional.prefix_caching")
    assert off.status == "not_run" and "off" in off.detail
    measured = functional_results()
    measured["graph_vs_eager"] = {"status": "measured", "identical": False}
    assert by_id(run_checks(measured), "functional.graph_vs_eager")[0].status == "failed"


def test_prefix_hits_off_by_one_block_fail():
    wrong = functional_results()
    wrong["prefix_caching"]["hit_tokens"] = 768 - 128  # one request missed a block
    (c,) = by_id(run_checks(wrong), "functional.prefix_caching")
    assert c.status == "failed" and (c.expected, c.actual) == (768, 640)


def test_prefix_check_without_block_size_is_not_run():
    no_block = functional_results()
    no_block["prefix_caching"].update(block_size=None, prefix_full_blocks=None, expected_hit_tokens=None)
    (c,) = by_id(run_checks(no_block), "functional.prefix_caching")
    assert c.status == "not_run" and "block size" in c.detail


def test_one_counted_prefill_step_cannot_show_chunking_and_a_lost_chunk_fails():
    """vLLM 0.32 counts the whole prompt in the step of its first token (what the golden run recorded: 4 steps,
    529 + 4 tokens): that cannot tell chunked from unchunked, so not_run, never passed. A chunk the counters never
    saw (tokens short by 256) fails."""
    one_step = functional_results()
    one_step["chunked_prefill"].update(engine_steps=4, prefill_steps=1)
    (c,) = by_id(run_checks(one_step), "functional.chunked_prefill")
    assert c.status == "not_run" and "1 prefill steps counted (at least 3 if chunked)" in c.detail
    lost = functional_results()
    lost["chunked_prefill"]["engine_step_tokens"] = 533 - 256
    (c,) = by_id(run_checks(lost), "functional.chunked_prefill")
    assert c.status == "failed" and "277 tokens computed" in c.detail


def test_chunked_prefill_without_vllm_counters_is_not_run():
    bare = functional_results()
    bare["chunked_prefill"].update(engine_steps=None, engine_step_tokens=None, prefill_steps=None)
    (c,) = by_id(run_checks(bare), "functional.chunked_prefill")
    assert c.status == "not_run" and "vllm:iteration_tokens_total" in c.detail


def test_graph_vs_eager_measured():
    same = functional_results()
    same["graph_vs_eager"] = {"status": "measured", "identical": True, "graph_tokens": [5, 6, 7],
                              "eager_tokens": [5, 6, 7]}
    assert by_id(run_checks(same), "functional.graph_vs_eager")[0].status == "passed"
    contradicting = functional_results()
    contradicting["graph_vs_eager"] = {"status": "measured", "identical": True, "graph_tokens": [5, 6, 7],
                                       "eager_tokens": [5, 6, 8]}  # says identical, tokens differ
    assert by_id(run_checks(contradicting), "functional.graph_vs_eager")[0].status == "failed"


def test_nothing_measured_is_not_run_everywhere():
    res = run_checks({})
    assert [(c.id, c.status) for c in res] == [(i, "not_run") for i in IDS]


def test_engine_flags_from_a_real_start_up_log():
    log = GOLDEN / "logs" / "functional-functional.log"
    text = log.read_text()
    assert "enable_prefix_caching=True" in text and "enable_chunked_prefill=True" in text
    assert engine_config_flags(log) == {"enable_prefix_caching": True, "enable_chunked_prefill": True}


def test_engine_flags_missing_from_the_log_are_none(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("INFO engine started enable_prefix_caching=False\n")
    assert engine_config_flags(log) == {"enable_prefix_caching": False, "enable_chunked_prefill": None}


def test_not_applicable_records_configured_or_why_not(tmp_path):
    """Tensor parallelism and multi-modal input are recorded from the study and config.json, not exercised."""
    from studykit.params import load_study

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    study = load_study(tiny_study(tmp_path))
    na = not_applicable(study, tmp_path)
    assert na["tensor_parallel"]["status"] == "not applicable" and "1" in na["tensor_parallel"]["reason"]
    assert na["multi_modal"]["status"] == "not applicable" and "LlamaForCausalLM" in na["multi_modal"]["reason"]
    tp2 = study.model_copy(update={"server": study.server.model_copy(update={"tensor_parallel_size": 2})})
    assert not_applicable(tp2, tmp_path)["tensor_parallel"] == {"status": "configured", "tensor_parallel_size": 2}
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["X"], "vision_config": {}}))
    mm = not_applicable(study, tmp_path)["multi_modal"]
    assert mm["status"] == "not checked" and "vision_config" in mm["reason"]


def test_budget_and_plan(tmp_path):
    from studykit.params import load_study

    study = load_study(tiny_study(tmp_path, {"functional": {"max_num_batched_tokens": 128}}))
    assert batched_tokens_budget(study) == (128, ["--max-num-batched-tokens", "128"])
    steps = plan(study, tmp_path, tmp_path, 8000)
    assert [s.label for s in steps] == ["functional", "prefix-cache request", "chunked-prefill request"]
    assert "273-token prompt, budget 128" in steps[2].text  # 2 x 128 + 17
    graph = study.model_copy(update={"functional": study.functional.model_copy(update={"graph_vs_eager": True})})
    other = plan(graph, tmp_path, tmp_path, 8000)[-1]
    want = "functional-graph" if study.enforce_eager else "functional-eager"
    assert other.label == want and ("--enforce-eager" in other.argv) == (not study.enforce_eager)


def test_run_keeps_what_it_measured_when_the_server_fails(tmp_path, default_model_dir):
    """No engine is started: the server step raises. The stage fails, results/functional.json has the error and
    what was recorded before it (not_applicable), and nothing it did not measure."""
    from studykit.runner.context import StageFailed, open_stage
    from studykit.stages.functional import stage

    ctx = open_stage("functional", str(tmp_path / "run"), str(tiny_study(tmp_path)))
    ctx._model_dir = default_model_dir
    p = ctx.params({"prefix_requests": 3})

    def no_server(step):
        raise RuntimeError(f"engine for {step.label} died")

    ctx.server_for = no_server
    with pytest.raises(StageFailed, match="engine for functional died"):
        stage.run(ctx, p)
    doc = json.loads((tmp_path / "run" / "results" / "functional.json").read_text())
    assert doc["status"] == "failed" and doc["params"]["prefix_requests"] == 3
    assert doc["not_applicable"]["tensor_parallel"]["status"] == "not applicable"
    assert doc["prefix_caching"] is None and doc["graph_vs_eager"] is None


REAL_LOG = GOLDEN / "logs" / "functional-functional.log"


def engine_args_from_golden(command_edit=lambda c: c):
    from studykit.engine.engine_config import read_engine_config

    command = json.loads((GOLDEN / "results" / "functional.json").read_text()).get("engine_args", {}).get("command")
    if command is None:  # golden recorded before the check existed: the command of the journal's functional server
        rec = next(json.loads(line) for line in (GOLDEN / "commands.jsonl").read_text().splitlines()
                   if '"label": "functional"' in line)
        command = rec["command"]
    return {"command": command_edit(command), "logged": read_engine_config(REAL_LOG)["non_default_args"]}


def test_engine_args_vllm_logged_match_the_command():
    data = {**functional_results(), "engine_args": engine_args_from_golden()}
    (c,) = by_id(run_checks(data), "functional.engine_args_match_command")
    assert c.status == "passed", c.detail
    # by hand from the real log line: the budget vLLM parsed is the command's
    assert c.actual["max_num_batched_tokens"] == 256 and c.expected["max_num_batched_tokens"] == "256"


def test_a_flag_vllm_read_differently_fails():
    """The command says 512, vLLM logged 256 (an extra_args override, a launcher that dropped the flag)."""
    data = {**functional_results(), "engine_args": engine_args_from_golden(
        lambda c: c.replace("--max-num-batched-tokens 256", "--max-num-batched-tokens 512"))}
    (c,) = by_id(run_checks(data), "functional.engine_args_match_command")
    assert c.status == "failed" and "max_num_batched_tokens" in c.detail and "'512'" in c.detail


def test_an_arg_vllm_lists_that_the_command_lacks_fails():
    args = engine_args_from_golden()
    args["logged"] = {**args["logged"], "enable_prefix_caching": False}
    (c,) = by_id(run_checks({**functional_results(), "engine_args": args}), "functional.engine_args_match_command")
    assert c.status == "failed" and "enable_prefix_caching" in c.detail


def test_no_logged_args_is_not_run():
    args = {**engine_args_from_golden(), "logged": None}
    (c,) = by_id(run_checks({**functional_results(), "engine_args": args}), "functional.engine_args_match_command")
    assert c.status == "not_run"
