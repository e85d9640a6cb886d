"""Every check the kit reports can fail: each is fed a real recorded result (passes) and a wrong one (fails);
a check without its input is `not_run` with the reason, never passed."""

from __future__ import annotations

import copy
from pathlib import Path

from studykit import checks

DATA = Path(__file__).parent / "data" / "bench"


def by_name(results, fragment):
    found = [c for c in results if fragment in c["name"]]
    assert found, f"no check named like {fragment!r} in {[c['name'] for c in results]}"
    return found


def statuses(results):
    return {c["name"]: c["status"] for c in results}


def test_argv_has():
    argv = ["--num-prompts", "5", "--num-prompts", "7", "--save-result"]
    assert checks.argv_has(argv, {"--num-prompts": 7, "--save-result": None})["status"] == "passed"
    bad = checks.argv_has(argv, {"--num-prompts": 5, "--seed": 0})
    assert bad["status"] == "failed" and bad["actual"] == {"--num-prompts": "7", "--seed": "missing"}


# --- accuracy and functional -----------------------------------------------------------------------------------

def test_accuracy_checks_fail_and_not_run():
    from studykit.stages.accuracy.stage import accuracy_checks
    from studykit.stages.accuracy.params import AccuracyParams

    from studykit.stages.accuracy.compare import free_running_summary

    p = AccuracyParams()
    per_prompt = [{"id": "a", "equal_tokens": 16, "total_tokens": 16, "first_divergence_detail": None}]
    good = {"per_prompt": per_prompt, "free_running": free_running_summary(per_prompt),
            "teacher_forced": {"positions": 16, "top1_agreement": 1.0, "mean_kl": 0.001}}
    det = {"identical": True, "mismatched": []}
    assert all(c["status"] == "passed" for c in accuracy_checks(good, det, p))
    bad = copy.deepcopy(good)
    bad["free_running"]["token_agreement_excluding_near_ties"] = 0.5
    bad["teacher_forced"].update(top1_agreement=0.5, mean_kl=1.0)
    res = accuracy_checks(bad, {"identical": False, "mismatched": ["a"]}, p)
    assert [c["status"] for c in res] == ["failed"] * 4
    none = copy.deepcopy(good)
    none["teacher_forced"] = {"positions": 0}
    assert [c["status"] for c in accuracy_checks(none, det, p)][1:3] == ["not_run", "not_run"]


def functional_results(enabled="True"):
    return {"prefix_caching": {"enabled": enabled, "hit_tokens": 768, "expected_hit_tokens": 768, "requests": 4,
                               "prefix_full_blocks": 2, "block_size": 128, "why_no_hits": None},
            "chunked_prefill": {"completed": True, "prompt_tokens": 529, "max_num_batched_tokens": 256},
            "graph_vs_eager": {"status": "not applicable", "reason": "graph compilation on CPU takes minutes"}}


def test_functional_checks_fail_and_not_run():
    from studykit.stages.functional.stage import functional_checks

    res = functional_checks(functional_results())
    assert [c["status"] for c in res] == ["passed", "passed", "not_run"]
    assert "minutes" in res[2]["detail"]
    bad = functional_results()
    bad["prefix_caching"]["hit_tokens"] = 0
    bad["chunked_prefill"]["completed"] = False
    assert [c["status"] for c in functional_checks(bad)][:2] == ["failed", "failed"]
    off = functional_checks(functional_results(enabled="False"))
    assert off[1]["status"] == "not_run" and "off" in off[1]["detail"]
    measured = functional_results()
    measured["graph_vs_eager"] = {"status": "measured", "identical": False}
    assert functional_checks(measured)[2]["status"] == "failed"
