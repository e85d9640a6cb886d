"""Accuracy and functional stages for real, and an independent recomputation of the accuracy summary."""

import math

import numpy as np
import pytest

from studykit.evidence.rundir import read_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run_dir(default_run):
    """The session's real default run: 9 built-in zh/en prompts x 16 tokens, and the functional stage."""
    return default_run


def test_accuracy_results_have_every_metric(run_dir, no_vllm_left):
    acc = read_json(run_dir / "results" / "accuracy.json")
    assert acc["status"] == "passed"
    fr = acc["free_running"]
    assert {k for k, v in fr.items() if v is not None} >= {"prompts", "token_agreement", "positions",
                                                          "agreeing_positions", "near_ties", "real_divergences",
                                                          "requests", "position_agreement"}
    # every position of every prompt is judged once: it agrees, or it is a near tie, or a real divergence
    assert fr["positions"] == fr["prompts"] * acc["params"]["max_new_tokens"]
    assert fr["agreeing_positions"] + fr["near_ties"] + fr["real_divergences"] == fr["positions"]
    assert fr["real_divergences"] == 0
    assert set(acc["threshold_basis"]) >= {"near_tie_margin", "max_mean_kl", "min_top1_agreement"}
    assert set(acc["teacher_forced"]) >= {"top1_agreement", "prob_mae", "prob_max_error", "mean_topk_overlap",
                                          "mean_kl", "max_kl", "ref_token_outside_cand_topk"}
    n = acc["params"]["max_new_tokens"]
    assert acc["teacher_forced"]["positions"] == acc["free_running"]["prompts"] * n
    assert acc["determinism"]["identical"] is True
    assert (run_dir / "charts" / "accuracy-prob-error.png").stat().st_size > 0


def test_independent_recomputation_reproduces_the_summary(run_dir):
    acc = read_json(run_dir / "results" / "accuracy.json")
    full = np.load(run_dir / "raw" / "accuracy" / "reference_logprobs.npz")
    errors, kls, top1, equal, total = [], [], [], 0, 0
    for pp in acc["per_prompt"]:
        equal += sum(a == b for a, b in zip(pp["ref_tokens"], pp["vllm_tokens"]))
        total += len(pp["ref_tokens"])
        for j, pos in enumerate(pp["positions"]):
            tok = pp["ref_tokens"][j]
            cand = {int(t): v for t, v in pos["cand"].items()}
            ref_row = full[pp["id"]][j]
            assert int(np.argmax(ref_row)) == tok  # the reference is greedy
            p_ref = {t: math.exp(float(ref_row[t])) for t in cand}
            q = {t: math.exp(v["logprob"]) for t, v in cand.items()}
            errors.append(abs(p_ref[tok] - q[tok]))
            kl = sum(p * math.log(p / q[t]) for t, p in p_ref.items() if p > 0)
            p_rest, q_rest = 1 - sum(p_ref.values()), 1 - sum(q.values())
            if p_rest > 0:
                kl += p_rest * math.log(p_rest / max(q_rest, 1e-12))
            kls.append(max(kl, 0.0))
            top1.append(min(cand, key=lambda t: cand[t]["rank"]) == tok)
    tf = acc["teacher_forced"]
    assert acc["free_running"]["token_agreement"] == pytest.approx(equal / total)
    assert tf["prob_mae"] == pytest.approx(sum(errors) / len(errors), rel=1e-6)
    assert tf["prob_max_error"] == pytest.approx(max(errors), rel=1e-6)
    assert tf["mean_kl"] == pytest.approx(sum(kls) / len(kls), rel=1e-5, abs=1e-9)
    assert tf["top1_agreement"] == pytest.approx(sum(top1) / len(top1))


def test_divergences_are_recomputed_from_the_raw_logprobs(run_dir):
    """Each judged divergence again, from the reference's npz (its rows are the reference's context, which vLLM
    resumed from) and vLLM's returned logprobs, not from the summary."""
    acc = read_json(run_dir / "results" / "accuracy.json")
    full = np.load(run_dir / "raw" / "accuracy" / "reference_logprobs.npz")
    th = acc["thresholds"]
    kinds = []
    for pp in acc["per_prompt"]:
        for d in pp["divergences"]:
            j, ref_tok, vllm_tok = d["position"], d["ref_token"], d["vllm_token"]
            assert ref_tok == pp["ref_tokens"][j] and vllm_tok != ref_tok
            row = full[pp["id"]][j]
            p_own, p_other = math.exp(float(row[ref_tok])), math.exp(float(row[vllm_tok]))
            assert d["margin"] == pytest.approx(p_own - p_other, abs=1e-6) and d["margin"] >= 0
            if d["kind"] == "near_tie":
                # both engines within the margin, vLLM emitted its own top token, the distributions agree there
                assert d["margin"] <= th["near_tie_margin"] and 0 <= d["vllm_margin"] <= th["near_tie_margin"]
                assert d["p_vllm_vllm_token"] == pytest.approx(d["p_vllm_top"])
                assert d["kl"] <= th["max_near_tie_kl"]
            kinds.append(d["kind"])
    fr = acc["free_running"]
    assert (fr["near_ties"], fr["real_divergences"]) == (kinds.count("near_tie"), kinds.count("divergence"))


def test_functional_checks_are_measured(run_dir):
    f = read_json(run_dir / "results" / "functional.json")
    assert f["status"] == "passed"
    pc = f["prefix_caching"]
    assert pc["enabled"] == "True" and pc["block_size"]
    # Whole blocks of the shared prefix are reused by every request after the first.
    later = pc["requests"] - 1
    assert pc["hit_tokens"] == pc["expected_hit_tokens"] == later * (pc["prefix_tokens"] // pc["block_size"]) * pc["block_size"]
    assert 0 < pc["hit_rate"] < 1
    cp = f["chunked_prefill"]
    assert cp["completed"] and cp["prompt_tokens"] > cp["max_num_batched_tokens"] and cp["enabled"] is True
    # vLLM's own counters computed the prompt and the generated tokens exactly once
    assert cp["engine_step_tokens"] == cp["prompt_tokens"] + cp["output_tokens"]
    assert {c["id"]: c["status"] for c in f["checks"]}["functional.engine_args_match_command"] == "passed"
    assert f["graph_vs_eager"]["status"] == "not applicable" and f["graph_vs_eager"]["reason"]
    assert f["not_applicable"]["tensor_parallel"]["status"] == "not applicable"
    assert f["not_applicable"]["multi_modal"]["status"] == "not applicable"
