"""The tasks stage after lm-eval ran: per-item pairing of the two backends, every check fed a right result (pass)
and a wrong one (fail or not run), and `run` on lm-eval output files written by a stand-in for the two lm-eval
commands (no model, no vLLM): what it stores, and a run whose vLLM side logged nothing keeps the reference."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from conftest import DATA, by_id, tiny_study, typed_result
from studykit.stages.tasks import checks, lmeval, stage
from studykit.stages.tasks.params import TasksParams
from studykit.stages.tasks.stage import compare_task


def _mc_sample(doc_id: int, lls: list[float], gold: int, prompt: str | None = None) -> dict:
    """One record of lm-eval's --log_samples for a multiple-choice item, as lm-eval 0.4 writes it (acc: numpy's
    argmax, the first of equal log-likelihoods)."""
    best = lls.index(max(lls))
    return {"doc_id": doc_id, "doc": {"id": f"q{doc_id}"}, "target": str(gold),
            "arguments": {f"gen_args_{i}": {"arg_0": "Q?", "arg_1": f" c{i}"} for i in range(len(lls))},
            "filtered_resps": [[str(x), "False"] for x in lls], "filter": "none",
            "metrics": ["acc"], "acc": float(best == gold), "doc_hash": f"d{doc_id}",
            "prompt_hash": prompt or f"p{doc_id}"}


def _paired(ref_right: list[int], cand_right: list[int]) -> tuple[list[dict], list[dict]]:
    ref = [_mc_sample(i, [-1.0, -2.0] if r else [-2.0, -1.0], 0) for i, r in enumerate(ref_right)]
    cand = [_mc_sample(i, [-1.1, -2.1] if c else [-2.1, -1.1], 0) for i, c in enumerate(cand_right)]
    return ref, cand


def _aggregates(ref: float, vllm: float, task: str = "t") -> dict:
    """lm-eval's results JSON of both runs, reduced to the aggregate the check reads."""
    return {"reference": {"results": {task: {"acc,none": ref}}}, "vllm": {"results": {task: {"acc,none": vllm}}}}


def _statuses(p: TasksParams, tasks: list[dict], subject: str = "t") -> dict[str, str]:
    res = checks.checks(p, typed_result("tasks", {"tasks": tasks}))
    return {c.id: c.status for c in res if c.subject == subject}


def test_checks_pass_when_the_backends_agree():
    ref, cand = _paired([1, 1, 0, 1], [1, 1, 0, 1])
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None, _aggregates(0.75, 0.75))
    assert t["metric"] == "acc,none" and t["mcnemar_exact_p"] == 1.0 and not t["discordant"]
    assert t["loglikelihood"]["max_abs_delta_nats"] == pytest.approx(0.1)
    assert (t["reference"]["lm_eval_score"], t["candidate"]["lm_eval_score"]) == (0.75, 0.75)
    # 4 items agree: Agresti-Min half width 1.959964 / 6 = 0.3267, inside a tolerance of 0.4
    got = _statuses(TasksParams(tasks=["t"], baselines={"t": 0.75}, max_abs_delta=0.4), [t])
    assert got == dict.fromkeys(["tasks.task_compared", "tasks.items_paired", "tasks.reference_log_parse",
                                 "tasks.vllm_log_parse", "tasks.paired_delta_within_tolerance",
                                 "tasks.baseline_within_rtol"], "passed")


def test_each_check_can_fail():
    ref, cand = _paired([1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0])
    cand = cand[:-1]  # one item the vLLM run did not log
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None, _aggregates(0.75, 0.375))
    assert t["only_reference_correct"] == 3 and len(t["discordant"]) == 3
    assert t["discordant"][0]["reference"]["answer"]["text"] == " c0"
    assert t["discordant"][0]["candidate"]["answer"]["text"] == " c1"
    # 7 paired items, 3 only the reference right: Agresti-Min centre -3/9, sd sqrt(4 - 9/9)/9 = 0.19245,
    # high -0.3333 + 1.959964 x 0.19245 = 0.0439 > -0.1: inconclusive at 0.1 (the interval reaches into it);
    # |3/7 - 0.9| = 0.471 > 0.05 x 0.9; the vLLM log (7 items, 3 right) does not average to lm-eval's 0.375
    got = _statuses(TasksParams(tasks=["t"], max_abs_delta=0.1, baselines={"t": 0.9}), [t])
    assert got == {"tasks.task_compared": "passed",
                   "tasks.items_paired": "failed",
                   "tasks.reference_log_parse": "passed",
                   "tasks.vllm_log_parse": "failed",
                   "tasks.paired_delta_within_tolerance": "inconclusive",
                   "tasks.baseline_within_rtol": "failed"}


def test_lm_eval_score_disagreeing_with_the_item_logs_fails_the_parse_check():
    ref, cand = _paired([1, 0], [1, 0])
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None, _aggregates(0.5, 0.6))
    got = _statuses(TasksParams(tasks=["t"]), [t])
    assert got["tasks.reference_log_parse"] == "passed"
    assert got["tasks.vllm_log_parse"] == "failed"
    assert got["tasks.baseline_within_rtol"] == "not_run"


def _am(c: int, b: int, n: int) -> tuple[float, float]:
    """Agresti-Min by hand (0.5 added to each cell, then Wald), independent of studykit.verdict."""
    centre = (c - b) / (n + 2)
    sd = ((b + c + 1) - (c - b) ** 2 / (n + 2)) ** 0.5 / (n + 2)
    return centre - 1.959963985 * sd, centre + 1.959963985 * sd


@pytest.mark.parametrize("ref_right,cand_right,tol,want", [
    # 200 items, none discordant: half width 1.96 / 202 = 0.0097 inside 0.05
    ([1] * 100 + [0] * 100, [1] * 100 + [0] * 100, 0.05, "passed"),
    # 200 items, 40 only the reference right: centre -40/202 = -0.198, high -0.198 + 0.056 < -0.05
    ([1] * 140 + [0] * 60, [0] * 40 + [1] * 100 + [0] * 60, 0.05, "failed"),
    # 20 items, none discordant: half width 1.96 / 22 = 0.089 > 0.05
    ([1] * 10 + [0] * 10, [1] * 10 + [0] * 10, 0.05, "inconclusive"),
])
def test_paired_gate_reads_the_interval_against_the_tolerance(ref_right, cand_right, tol, want):
    ref, cand = _paired(ref_right, cand_right)
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None)
    n = len(ref_right)
    c = sum(1 for r, v in zip(ref_right, cand_right) if v and not r)
    b = sum(1 for r, v in zip(ref_right, cand_right) if r and not v)
    low, high = _am(c, b, n)
    assert (t["delta"]["ci95_low"], t["delta"]["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    res = checks.checks(TasksParams(tasks=["t"], max_abs_delta=tol), typed_result("tasks", {"tasks": [t]}))
    (gate,) = by_id(res, "tasks.paired_delta_within_tolerance", "t")
    assert gate.status == want
    if want == "inconclusive":
        assert "items at the observed discordant rates would settle it" in gate.detail


def test_an_inconclusive_gate_says_how_many_items_settle_it_and_can_be_accepted():
    ref, cand = _paired([1] * 10 + [0] * 10, [1] * 10 + [0] * 10)
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None)
    t["gate"] = stage.gate(t, TasksParams(tasks=["t"]), "params default")
    # no discordant items: half width 1.959964 / (n + 2) <= 0.05 first at n + 2 >= 39.2, n = 38
    assert t["gate"]["outcome"] == "inconclusive" and t["gate"]["items_to_settle"] == 38
    result = typed_result("tasks", {"tasks": [t]})
    (plain,) = by_id(checks.checks(TasksParams(tasks=["t"]), result), "tasks.paired_delta_within_tolerance")
    assert plain.status == "inconclusive" and "about 38 items" in plain.detail
    (accepted,) = by_id(checks.checks(TasksParams(tasks=["t"], accept_inconclusive=True), result),
                        "tasks.paired_delta_within_tolerance")
    assert accepted.status == "passed" and accepted.detail.startswith("inconclusive") and "accepted" in accepted.detail


def test_a_deciding_tie_is_left_out_and_counted_per_backend():
    """vLLM's bf16 log-likelihoods tie the keyed choice with another; lm-eval's argmax takes the first (wrong)."""
    ref = [_mc_sample(0, [-2.0, -1.0], 1), _mc_sample(1, [-1.0, -2.0], 0), _mc_sample(2, [-1.0, -1.0, -3.0], 2)]
    cand = [_mc_sample(0, [-1.5, -1.5], 1), _mc_sample(1, [-1.0, -2.0], 0), _mc_sample(2, [-1.0, -1.0, -3.0], 2)]
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None)
    # item 0: a tie on vLLM holding the key (left out); item 2: a tie of two wrong choices scores 0 either way (kept)
    assert [d["doc_id"] for d in t["tied"]] == [0] and "vllm [0, 1]" in t["tied"][0]["why"]
    assert (t["reference"]["ties"], t["candidate"]["ties"]) == (0, 1)
    assert t["items"] == 2 and t["only_reference_correct"] == 0 and not t["discordant"]
    assert t["per_item"][0]["excluded"].startswith("tie") and t["per_item"][2]["excluded"] is None


def test_a_repeated_prompt_counts_once():
    ref = [_mc_sample(i, [-1.0, -2.0], 0, prompt="same" if i in (1, 3) else None) for i in range(4)]
    cand = [_mc_sample(i, [-1.0, -2.0] if i != 3 else [-2.0, -1.0], 0, prompt="same" if i in (1, 3) else None)
            for i in range(4)]
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None)
    assert t["duplicates"] == [{"doc_id": 3, "id": "q3", "why": "duplicate: same prompt as doc 1"}]
    assert t["items"] == 3 and t["only_reference_correct"] == 0
    assert t["reference"]["logged_items"] == 4  # the parse check still covers every logged item


def test_golden_studykit_mc_ties_left_out():
    """The golden run (the kit's distinct items, recorded 2026-12-03): 106 items, two of them exact vLLM ties on
    the keyed choice (mc-006, mc-021: bf16 log-likelihoods equal), left out: 104 items, none only the reference
    got right, 1 only vLLM: Agresti-Min by hand (centre 1/106, sd sqrt(2 - 1/106)/106) [-0.0167, +0.0355], inside
    +-0.05: passed."""
    golden = DATA / "runs" / "golden"
    samples = {b: {t: lmeval.read_samples(f) for t, f in lmeval.sample_files(golden / "raw" / "tasks" / b).items()}
               for b in lmeval.BACKENDS}
    t = compare_task("studykit_mc", ["studykit_mc"], samples["reference"], samples["vllm"], None)
    assert sorted(d["id"] for d in t["tied"]) == ["mc-006", "mc-021"]
    assert len(t["duplicates"]) == 0 and (t["reference"]["ties"], t["candidate"]["ties"]) == (0, 2)
    assert (t["items"], t["only_reference_correct"], t["only_candidate_correct"]) == (104, 0, 1)
    low, high = _am(1, 0, 104)
    assert (t["delta"]["ci95_low"], t["delta"]["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    assert low == pytest.approx(-0.0167, abs=1e-4) and high == pytest.approx(0.0355, abs=1e-4)
    res = checks.checks(TasksParams(), typed_result("tasks", {"tasks": [t]}))
    assert by_id(res, "tasks.paired_delta_within_tolerance", "studykit_mc")[0].status == "passed"


def test_thresholds_say_where_they_come_from():
    got = stage.threshold_sources(TasksParams())
    assert got["max_abs_delta"] == {"value": 0.05, "source": "params default (a chosen tolerance for the paired "
                                                              "difference); not measured"}
    assert stage.threshold_sources(TasksParams(max_abs_delta=0.1))["max_abs_delta"]["source"].startswith("study file")


def test_score_check_does_not_run_without_lm_evals_aggregate():
    """A group's aggregate weighs its subtasks lm-eval's way, so it is not compared (nor is a missing one)."""
    ref, cand = _paired([1, 0], [1, 0])
    t = compare_task("g", ["a"], {"a": ref}, {"a": cand}, None, _aggregates(0.5, 0.5, task="g"))
    assert t["subtasks"] == ["a"] and t["reference"]["lm_eval_score"] is None
    got = _statuses(TasksParams(tasks=["g"]), [t], subject="g")
    assert got["tasks.reference_log_parse"] == got["tasks.vllm_log_parse"] == "not_run"


def test_a_task_missing_from_the_result_fails():
    ref, cand = _paired([1, 0], [1, 0])
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None)
    res = checks.checks(TasksParams(tasks=["t", "u"]), typed_result("tasks", {"tasks": [t]}))
    (c,) = by_id(res, "tasks.task_compared", "u")
    assert c.status == "failed" and "no comparison of 'u'" in c.detail
    assert by_id(res, "tasks.task_compared", "t")[0].status == "passed"


def test_a_named_metric_that_was_not_logged_is_an_error():
    ref, cand = _paired([1], [1])
    with pytest.raises(ValueError, match=r"no samples scored by 'exact_match' with filter 'strict-match'; "
                                         r"logged: \['acc,none'\]"):
        compare_task("t", ["t"], {"t": ref}, {"t": cand}, "exact_match,strict-match")


def test_result_fits_the_schema():
    ref, cand = _paired([1, 0, 1], [1, 1, 1])
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None)
    result = typed_result("tasks", json.loads(json.dumps({"tasks": [t]})))
    result.checks = checks.checks(TasksParams(tasks=["t"]), result)
    assert result.tasks[0].only_candidate_correct == 1
    assert result.tasks[0].per_item[1].candidate.answer["choice"] == 0
    assert all(c.id.startswith("tasks.") and c.subject == "t" for c in result.checks)


# --- run() on lm-eval output written by a stand-in -----------------------------------------------------------------


class FakeServer:
    label, command = "tasks", "vllm serve m"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _ctx(tmp_path: Path, right: dict[str, list[int]], aggregate: dict[str, float]):
    """A stage context whose two lm-eval commands write the sample log and results JSON lm-eval would."""
    from studykit.evidence.journal import CommandRecord
    from studykit.runner.context import open_stage

    ctx = open_stage("tasks", str(tmp_path / "run"), str(tiny_study(tmp_path)))
    ctx._model_dir = tmp_path

    def fake_run(step, timeout=None):
        backend = "reference" if step.label == "lm-eval reference" else "vllm"
        out = lmeval.output_dir(ctx.run_dir, backend) / "model"
        out.mkdir(parents=True, exist_ok=True)
        if right[backend]:
            samples = [_mc_sample(i, [-1.0, -2.0] if r else [-2.0, -1.0], 0) for i, r in enumerate(right[backend])]
            (out / "samples_studykit_mc_2026-01-01T00-00-00.jsonl").write_text(
                "".join(json.dumps(s) + "\n" for s in samples))
        (out / "results_2026-01-01T00-00-00.json").write_text(
            json.dumps({"results": {"studykit_mc": {"alias": "studykit_mc", "acc,none": aggregate[backend]}}}))
        return CommandRecord("tasks", step.label, step.argv, shlex.join(step.argv), {}, "t", seconds=1.0, returncode=0)

    ctx.run_step = fake_run
    ctx.server_for = lambda step: FakeServer()
    return ctx


def test_run_pairs_what_both_lm_eval_runs_logged(tmp_path):
    ctx = _ctx(tmp_path, {"reference": [1] * 40, "vllm": [0] * 20 + [1] * 20}, {"reference": 1.0, "vllm": 0.5})
    p = ctx.params({"tasks": ["studykit_mc"], "limit": 40})
    result = stage.run(ctx, p)
    (t,) = result.tasks
    assert (t.items, t.reference.score, t.candidate.score) == (40, 1.0, 0.5)
    assert (t.reference.lm_eval_score, t.candidate.lm_eval_score) == (1.0, 0.5)
    assert [d.doc_id for d in t.discordant] == list(range(20))
    assert [c.label for c in result.commands] == ["lm-eval reference", "lm-eval vllm"]
    assert "--limit" in result.commands[0].argv and result.server == "tasks"
    assert result.reference["results_file"].endswith("results_2026-01-01T00-00-00.json")
    assert result.task_sources["local"]["studykit_mc"]["items"] >= 100
    assert result.thresholds["max_abs_delta"]["source"].startswith("params default")
    # 20 of 40 only the reference right: Agresti-Min high -20/42 + 1.96 x sqrt(21 - 400/42)/42 = -0.318 < -0.05
    assert t.gate.outcome == "failed" and t.gate.tolerance == 0.05 and t.gate.items_to_settle is None
    result.checks = checks.checks(p, result)
    assert [c.id for c in result.checks if c.status != "passed"] == ["tasks.paired_delta_within_tolerance",
                                                                     "tasks.baseline_within_rtol"]
    assert by_id(result.checks, "tasks.paired_delta_within_tolerance")[0].status == "failed"
    from studykit.runner.context import StageFailed

    with pytest.raises(StageFailed, match=r"studykit_mc: 95 % interval of vLLM - reference within"):
        ctx.write(result)
    doc = json.loads((tmp_path / "run" / "results" / "tasks.json").read_text())
    assert doc["status"] == "failed" and doc["tasks"][0]["candidate"]["lm_eval_score"] == 0.5


def test_run_keeps_the_reference_when_vllm_logged_nothing(tmp_path):
    from studykit.runner.context import StageFailed

    ctx = _ctx(tmp_path, {"reference": [1, 0], "vllm": []}, {"reference": 0.5, "vllm": 0.0})
    p = ctx.params({"tasks": ["studykit_mc"]})
    with pytest.raises(StageFailed, match="the vllm run logged no samples"):
        stage.run(ctx, p)
    doc = json.loads((tmp_path / "run" / "results" / "tasks.json").read_text())
    assert doc["status"] == "failed" and doc["reference"]["seconds"] >= 0 and len(doc["commands"]) == 2
