"""The tasks stage for real (lm-eval on transformers and on vllm serve, small limit), and an independent
recomputation of its numbers from the per-sample logs lm-eval wrote."""

import json

import pytest
from studykit.evidence.rundir import read_json
from studykit.schema import validate_result
from studykit.stages.tasks.stats import mcnemar_exact_p

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def run_dir(default_run):
    """The session's real default run: both shipped tasks in full (106 + 100 items) on vLLM and on fp32."""
    return default_run


def test_results_hold_scores_cis_delta_p_and_items(run_dir):
    data = read_json(run_dir / "results" / "tasks.json")
    validate_result("tasks", data)
    assert data["status"] == "passed"
    assert [t["task"] for t in data["tasks"]] == ["studykit_mc", "studykit_gen"]
    for t in data["tasks"]:
        left_out = {e["doc_id"] for e in t["duplicates"] + t["tied"]}
        assert t["items"] >= 100 and not t["unpaired"]
        assert len(t["per_item"]) == t["items"] + len(left_out)
        assert {r["doc_id"] for r in t["per_item"] if r["excluded"]} == left_out
        for side in ("reference", "candidate"):
            s = t[side]
            assert 0 <= s["ci95_low"] <= s["score"] <= s["ci95_high"] <= 1
        assert t["delta"]["ci95_low"] <= t["delta"]["value"] <= t["delta"]["ci95_high"]
        assert 0 < t["mcnemar_exact_p"] <= 1
    mc = data["tasks"][0]
    # the two engines see the same tokens: log-likelihoods differ by bf16 noise, not by a shifted input
    assert mc["loglikelihood"]["mean_max_abs_delta_nats"] < 0.5
    labels = [c["label"] for c in data["commands"]]
    assert labels == ["lm-eval reference", "lm-eval vllm"]
    assert (run_dir / "charts" / "tasks-scores.png").stat().st_size > 0


def test_numbers_recomputed_from_lm_evals_sample_logs(run_dir):
    data = read_json(run_dir / "results" / "tasks.json")
    logs, deciding_ties = {}, {"studykit_mc": set(), "studykit_gen": set()}
    for backend in ("reference", "vllm"):
        for path in (run_dir / "raw" / "tasks" / backend).rglob("samples_*.jsonl"):
            task = "studykit_mc" if "studykit_mc" in path.name else "studykit_gen"
            metric = "acc" if task == "studykit_mc" else "exact_match"
            samples = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            logs[backend, task] = {s["doc_id"]: s[metric] for s in samples}
            for s in samples if task == "studykit_mc" else ():
                # a tie decides the score when the keyed choice shares the top log-likelihood with another
                lls = [float(ll) for ll, _ in s["filtered_resps"]]
                top = {i for i, x in enumerate(lls) if x == max(lls)}
                if len(top) > 1 and int(s["target"]) in top:
                    deciding_ties[task].add(s["doc_id"])
    for t in data["tasks"]:
        ref, cand = logs["reference", t["task"]], logs["vllm", t["task"]]
        assert sorted(ref) == sorted(cand) == list(range(len(t["per_item"])))
        # lm-eval's own mean covers every logged item, ties and repeats included
        assert t["reference"]["logged_score"] == pytest.approx(sum(ref.values()) / len(ref))
        left_out = {e["doc_id"] for e in t["duplicates"] + t["tied"]}
        assert {e["doc_id"] for e in t["tied"]} == deciding_ties[t["task"]]
        ref = {d: v for d, v in ref.items() if d not in left_out}
        cand = {d: v for d, v in cand.items() if d not in left_out}
        n = t["items"]
        assert len(ref) == len(cand) == n
        assert t["reference"]["score"] == pytest.approx(sum(ref.values()) / n)
        assert t["candidate"]["score"] == pytest.approx(sum(cand.values()) / n)
        b = sum(1 for d in ref if cand[d] and not ref[d])
        c = sum(1 for d in ref if ref[d] and not cand[d])
        assert t["mcnemar_exact_p"] == pytest.approx(mcnemar_exact_p(b, c))
        assert len(t["discordant"]) == b + c


def test_commands_are_journaled(run_dir):
    lines = [json.loads(x) for x in (run_dir / "commands.jsonl").read_text(encoding="utf-8").splitlines()]
    tasks = [r for r in lines if r["stage"] == "tasks"]
    assert any("lm_eval run --model hf" in r["command"] for r in tasks)
    assert any("lm_eval run --model local-completions" in r["command"] for r in tasks)
    # the server is the study's shared one, journaled once by the stage that started it
    (shared,) = [r for r in lines if r.get("extra", {}).get("shared_by")]
    assert "tasks" in shared["extra"]["shared_by"] and "vllm serve" in shared["command"]
    assert json.loads((run_dir / "results" / "tasks.json").read_text())["server"] == \
        f"{shared['stage']}/{shared['label']}"
