"""Parallel layouts on CPU: the per-rank core binding the kit derives (VLLM_CPU_OMP_THREADS_BIND), the layout it
reports, and (e2e) a real TP=2 engine start with both ranks bound and recorded."""

import json
import os

import pytest

from conftest import ROOT, run_cli, tiny_study, why_run_failed
from studykit.engine import cmdline
from studykit.params import ParamsError, load_study

TP2_PARAMS = ROOT / "params" / "minicpm-tiny-tp2-cpu.yaml"
TP1_PARAMS = ROOT / "params" / "minicpm-tiny-cpu.yaml"


@pytest.mark.parametrize("cores,ranks,expected", [
    ([0, 1], 2, "0|1"),
    ([0, 1, 2, 3], 2, "0-1|2-3"),
    ([0, 1, 2, 3, 4, 5, 6, 7], 4, "0-1|2-3|4-5|6-7"),
    ([3, 1, 2], 2, "1|2"),            # sorted; the odd core is left to the API server process
    ([0, 2, 4, 6], 2, "0,2|4,6"),     # non-consecutive cores stay a comma list
    ([0, 1, 2, 3], 1, "0-3"),
])
def test_split_cores(cores, ranks, expected):
    assert cmdline.split_cores(cores, ranks) == expected


def test_split_cores_refuses_more_ranks_than_cores():
    with pytest.raises(ValueError, match=r"2 CPU worker ranks need at least 2 cores.*only 1 \(5\)"):
        cmdline.split_cores([5], 2)


def test_tp2_env_binds_one_core_set_per_rank_and_tp1_takes_every_core(tmp_path):
    tp2 = load_study(TP2_PARAMS)
    assert cmdline.platform_env(tp2, allowed_cores=[0, 1])[cmdline.THREADS_BIND] == "0|1"
    assert cmdline.platform_env(tp2, allowed_cores=list(range(8)))[cmdline.THREADS_BIND] == "0-3|4-7"
    # Without an explicit list: the cores this process may use, as on the machine running the study.
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        assert cmdline.platform_env(tp2)[cmdline.THREADS_BIND] == cmdline.split_cores(
            cmdline.one_per_physical_core(allowed), 2)
    # One rank decodes on every core (vLLM's auto would keep one of two back for its scheduler process) ...
    assert cmdline.platform_env(load_study(TP1_PARAMS), allowed_cores=[0, 1])[cmdline.THREADS_BIND] == "0-1"
    # ... unless the study asks for vLLM's own binding.
    auto = load_study(tiny_study(tmp_path, {"cpu": {"omp_threads_bind": "auto"}}, base=TP1_PARAMS))
    assert cmdline.THREADS_BIND not in cmdline.platform_env(auto, allowed_cores=[0, 1])
    assert cmdline.parallel_layout(auto, cmdline.platform_env(auto))["ranks"][0]["cores"] == "vLLM auto (NUMA node)"


def test_one_logical_cpu_per_physical_core(tmp_path):
    # 2 packages x 2 cores x 2 hyperthreads: cpu N and N+4 are siblings, as Linux numbers them.
    for cpu in range(8):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{(cpu % 4) // 2}\n")
        (topo / "core_id").write_text(f"{cpu % 2}\n")
    assert cmdline.one_per_physical_core(list(range(8)), sysfs=tmp_path) == [4, 5, 6, 7]
    assert cmdline.one_per_physical_core([0, 1, 5], sysfs=tmp_path) == [0, 5]
    # No topology for a core (a container hiding sysfs): it is kept as it is.
    assert cmdline.one_per_physical_core([0, 9], sysfs=tmp_path) == [0, 9]


def test_pipeline_and_data_parallel_ranks_count_too(tmp_path):
    study = load_study(tiny_study(tmp_path, {"server": {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}},
                                  base=TP1_PARAMS))
    assert cmdline.platform_env(study, allowed_cores=list(range(8)))[cmdline.THREADS_BIND] == "0-1|2-3|4-5|6-7"
    # vllm-cpu slices the list per data-parallel replica ([DP, PP, TP] order), so DP ranks get their own sets.
    dp = load_study(tiny_study(tmp_path, {"server": {"tensor_parallel_size": 2, "data_parallel_size": 2}},
                               base=TP1_PARAMS))
    env = cmdline.platform_env(dp, allowed_cores=list(range(4)))
    assert env[cmdline.THREADS_BIND] == "0|1|2|3"
    assert [(r["dp_rank"], r["tp_rank"], r["cores"]) for r in cmdline.parallel_layout(dp, env)["ranks"]] == [
        (0, 0, "0"), (0, 1, "1"), (1, 0, "2"), (1, 1, "3")]


def test_explicit_binding_wins_and_must_match_the_rank_count(tmp_path):
    study = load_study(tiny_study(tmp_path, {"cpu": {"omp_threads_bind": "1|0"}}, base=TP2_PARAMS))
    assert cmdline.platform_env(study, allowed_cores=list(range(8)))[cmdline.THREADS_BIND] == "1|0"
    with pytest.raises(ParamsError, match=r"has 3 core sets; allowed: exactly one per rank.* = 2"):
        load_study(tiny_study(tmp_path, {"cpu": {"omp_threads_bind": "0|1|2"}}, base=TP2_PARAMS))
    with pytest.raises(ParamsError, match=r"cpu\.omp_threads_bind"):
        load_study(tiny_study(tmp_path, {"cpu": {"omp_threads_bind": "zero|one"}}, base=TP2_PARAMS))


def test_server_env_override_is_what_the_layout_shows(tmp_path):
    study = load_study(tiny_study(tmp_path, {"server": {"env": {cmdline.THREADS_BIND: "1|0"}}}, base=TP2_PARAMS))
    env = cmdline.platform_env(study, allowed_cores=[0, 1])
    assert env[cmdline.THREADS_BIND] == "1|0"
    layout = cmdline.parallel_layout(study, env)
    assert [r["cores"] for r in layout["ranks"]] == ["1", "0"]


def test_parallel_layout_tp2_and_tp1():
    tp2 = load_study(TP2_PARAMS)
    layout = cmdline.parallel_layout(tp2, cmdline.platform_env(tp2, allowed_cores=[0, 1]))
    assert layout["tensor_parallel_size"] == 2 and layout["pipeline_parallel_size"] == 1
    assert layout["data_parallel_size"] == 1 and layout["distributed_executor_backend"] == "mp"
    assert layout["world_size"] == 2
    assert layout["ranks"] == [{"rank": 0, "dp_rank": 0, "pp_rank": 0, "tp_rank": 0, "cores": "0"},
                               {"rank": 1, "dp_rank": 0, "pp_rank": 0, "tp_rank": 1, "cores": "1"}]
    tp1 = load_study(TP1_PARAMS)
    single = cmdline.parallel_layout(tp1, cmdline.platform_env(tp1, allowed_cores=[0, 1]))
    assert single["world_size"] == 1 and single["distributed_executor_backend"] == "uni"
    assert single["ranks"] == [{"rank": 0, "dp_rank": 0, "pp_rank": 0, "tp_rank": 0, "cores": "0-1"}]


def test_parallel_layout_npu_maps_ranks_to_devices(tmp_path):
    study = load_study(tiny_study(tmp_path, {"platform": "npu", "npu": {"visible_devices": "4,5,6,7"},
                                             "server": {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}},
                                  base=TP1_PARAMS))
    layout = cmdline.parallel_layout(study, cmdline.platform_env(study))
    assert [(r["tp_rank"], r["pp_rank"], r["device"]) for r in layout["ranks"]] == [
        (0, 0, "4"), (1, 0, "5"), (0, 1, "6"), (1, 1, "7")]
    assert cmdline.THREADS_BIND not in cmdline.platform_env(study)


def _expand(core_set: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5], as vllm-cpu prints a rank's core ids."""
    ids = []
    for part in core_set.split(","):
        lo, _, hi = part.partition("-")
        ids += range(int(lo), int(hi or lo) + 1)
    return ids


@pytest.mark.e2e
def test_tp2_deploy_binds_both_ranks_for_real(tmp_path, no_vllm_left):
    """TP=2 on vllm-cpu through the kit: the derived binding is in every recorded vllm command's env, vLLM logs
    one core set per rank, the engine answers, and latency telemetry's process tree holds both rank workers. The
    serve stage rides on the real gate's server (no engine start of its own): MiniCPM's serve stage runs here,
    as its latency stage does, since the session's TP=1 MiniCPM run (conftest.minicpm_run) leaves them out."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("TP=2 on CPU needs 2 cores")
    outputs = tmp_path / "outputs"
    # No dummy gate: the real gate and both latency benches show the binding; one engine start (~35 s) less.
    params = tiny_study(tmp_path, {"deploy": {"dummy_gate": False}}, base=TP2_PARAMS)
    r = run_cli("run", str(params), "--stages", "deploy,latency,serve", env={"STUDYKIT_OUTPUTS": str(outputs)},
                timeout=2400)
    (run_dir,) = (outputs / "minicpm-tiny-tp2-cpu").iterdir()
    assert r.returncode == 0, why_run_failed(r, run_dir)
    expected = cmdline.cpu_threads_bind(load_study(TP2_PARAMS))
    records = [json.loads(line) for line in (run_dir / "commands.jsonl").read_text().splitlines()]
    vllm_runs = [rec for rec in records if rec.get("is_vllm")]
    engines = [rec for rec in vllm_runs if rec["argv"][3] == "serve" or rec["argv"][3:5] == ["bench", "latency"]]
    # the real gate, two latency benches: every engine start; the serve benches are clients of the real gate
    assert len(engines) == 3, [rec.get("label") for rec in records]
    assert len(vllm_runs) > len(engines), [rec.get("label") for rec in records]
    for rec in vllm_runs:
        assert rec["env"][cmdline.THREADS_BIND] == expected, rec
    for rec in engines:
        assert rec["argv"][rec["argv"].index("--tensor-parallel-size") + 1] == "2"
    deploy = json.loads((run_dir / "results" / "deploy.json").read_text())
    assert deploy["status"] == "passed" and deploy["smoke_chat"]["usage"]["completion_tokens"] > 0
    log = (run_dir / "logs" / "deploy-real-gate.log").read_text(errors="replace")
    assert "Not enough allowed NUMA nodes" not in log
    for rank, cores in enumerate(expected.split("|")):
        assert f"local_rank={rank}, core ids={_expand(cores)}" in log, log[-4000:]
    assert f"VLLM_CPU_OMP_THREADS_BIND={expected!r}" in log

    latency = json.loads((run_dir / "results" / "latency.json").read_text())
    assert latency["status"] == "passed"
    for tel in latency["telemetry"]:
        seen = tel["summary"].get("vllm_processes_seen", [])
        assert {"VLLM::Worker_TP0", "VLLM::Worker_TP1"} <= set(seen), tel["summary"]
        assert tel["summary"]["max_processes"] >= 3  # the bench, its engine core, two rank workers at least

    serve = json.loads((run_dir / "results" / "serve.json").read_text())
    assert serve["status"] == "passed" and serve["server"] == "deploy/real-gate"
    assert [run["completed"] for run in serve["runs"]] == [serve["params"]["num_prompts"]] * 2


def test_telemetry_records_vllm_titles_set_after_the_process_started():
    """vLLM workers rename themselves twice after they start (VLLM::Worker, then VLLM::Worker_TP<rank>);
    telemetry must see the rank names."""
    import subprocess
    import sys

    from studykit.engine.telemetry import Telemetry

    script = ("import time, setproctitle; time.sleep(0.8); setproctitle.setproctitle('VLLM::Worker'); "
              "time.sleep(0.8); setproctitle.setproctitle('VLLM::Worker_TP1'); time.sleep(1.0)")
    with Telemetry("cpu", interval_s=0.2) as tel:
        child = subprocess.Popen([sys.executable, "-c", script])
        child.wait(timeout=30)
    summary = tel.summary()
    assert summary["vllm_processes_seen"] == ["VLLM::Worker", "VLLM::Worker_TP1"], summary
    assert summary["max_processes"] >= 1
