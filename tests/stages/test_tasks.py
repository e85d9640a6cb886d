"""The tasks stage after lm-eval ran: per-item pairing of the two backends, every check fed a right result (pass)
and a wrong one (fail or not run), and `run` on lm-eval output files written by a stand-in for the two lm-eval
commands (no model, no vLLM): what it stores, and a run whose vLLM side logged nothing keeps the reference."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from conftest import by_id, tiny_study, typed_result
from studykit.stages.tasks import checks, lmeval, stage
from studykit.stages.tasks.params import TasksParams
from studykit.stages.tasks.stage import compare_task


def _mc_sample(doc_id: int, lls: list[float], gold: int) -> dict:
    """One record of lm-eval's --log_samples for a multiple-choice item, as lm-eval 0.4 writes it."""
    best = max(range(len(lls)), key=lls.__getitem__)
    return {"doc_id": doc_id, "doc": {"id": f"q{doc_id}"}, "target": str(gold),
            "arguments": {f"gen_args_{i}": {"arg_0": "Q?", "arg_1": f" c{i}"} for i in range(len(lls))},
            "filtered_resps": [[str(x), "False"] for x in lls], "filter": "none",
            "metrics": ["acc"], "acc": float(best == gold), "doc_hash": f"d{doc_id}", "prompt_hash": f"p{doc_id}"}


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
    got = _statuses(TasksParams(tasks=["t"], baselines={"t": 0.75}), [t])
    assert got == dict.fromkeys(["tasks.task_compared", "tasks.items_paired", "tasks.reference_score_matches_lm_eval",
                                 "tasks.vllm_score_matches_lm_eval", "tasks.delta_within_max_abs_delta",
                                 "tasks.baseline_within_rtol"], "passed")


def test_each_check_can_fail():
    ref, cand = _paired([1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0])
    cand = cand[:-1]  # one item the vLLM run did not log
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None, _aggregates(0.75, 0.375))
    assert t["only_reference_correct"] == 3 and len(t["discordant"]) == 3
    assert t["discordant"][0]["reference"]["answer"]["text"] == " c0"
    assert t["discordant"][0]["candidate"]["answer"]["text"] == " c1"
    # 7 paired items: reference 6/7, vLLM 3/7, |delta| = 3/7 > 0.1; |3/7 - 0.9| = 0.471 > 0.05 x 0.9
    got = _statuses(TasksParams(tasks=["t"], max_abs_delta=0.1, baselines={"t": 0.9}), [t])
    assert got == {"tasks.task_compared": "passed",
                   "tasks.items_paired": "failed",
                   "tasks.reference_score_matches_lm_eval": "not_run",
                   "tasks.vllm_score_matches_lm_eval": "not_run",
                   "tasks.delta_within_max_abs_delta": "failed",
                   "tasks.baseline_within_rtol": "failed"}


def test_lm_eval_score_disagreeing_with_the_item_logs_fails():
    ref, cand = _paired([1, 0], [1, 0])
    t = compare_task("t", ["t"], {"t": ref}, {"t": cand}, None, _aggregates(0.5, 0.6))
    got = _statuses(TasksParams(tasks=["t"]), [t])
    assert got["tasks.reference_score_matches_lm_eval"] == "passed"
    assert got["tasks.vllm_score_matches_lm_eval"] == "failed"
    assert got["tasks.baseline_within_rtol"] == "not_run"


def test_score_check_does_not_run_without_lm_evals_aggregate():
    """A group's aggregate weighs its subtasks lm-eval's way, so it is not compared (nor is a missing one)."""
    ref, cand = _paired([1, 0], [1, 0])
    t = compare_task("g", ["a"], {"a": ref}, {"a": cand}, None, _aggregates(0.5, 0.5, task="g"))
    assert t["subtasks"] == ["a"] and t["reference"]["lm_eval_score"] is None
    got = _statuses(TasksParams(tasks=["g"]), [t], subject="g")
    assert got["tasks.reference_score_matches_lm_eval"] == got["tasks.vllm_score_matches_lm_eval"] == "not_run"


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
    ctx = _ctx(tmp_path, {"reference": [1, 1, 0, 1], "vllm": [1, 0, 0, 1]}, {"reference": 0.75, "vllm": 0.5})
    p = ctx.params({"tasks": ["studykit_mc"], "limit": 4})
    result = stage.run(ctx, p)
    (t,) = result.tasks
    assert (t.items, t.reference.score, t.candidate.score) == (4, 0.75, 0.5)
    assert (t.reference.lm_eval_score, t.candidate.lm_eval_score) == (0.75, 0.5)
    assert [d.doc_id for d in t.discordant] == [1]
    assert [c.label for c in result.commands] == ["lm-eval reference", "lm-eval vllm"]
    assert "--limit" in result.commands[0].argv and result.server == "tasks"
    assert result.reference["results_file"].endswith("results_2026-01-01T00-00-00.json")
    assert result.task_sources["jsonl"]["studykit_mc"]["items"] >= 100
    result.checks = checks.checks(p, result)
    got = {c.id: c.status for c in result.checks}
    # |0.5 - 0.75| = 0.25 > max_abs_delta 0.05: the stage fails on that check alone
    assert got["tasks.delta_within_max_abs_delta"] == "failed"
    assert [c.id for c in result.checks if c.status == "failed"] == ["tasks.delta_within_max_abs_delta"]
    from studykit.runner.context import StageFailed

    with pytest.raises(StageFailed, match=r"studykit_mc: \|vLLM - reference\| <= max_abs_delta"):
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
