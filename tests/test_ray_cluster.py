"""Ray on NPU: the params of a multi-node cluster, the per-node commands of the dry run, and the preflight that
reads `ray status` (real outputs of ray 2.60.0, tests/data/ascend/ray-status-*.txt) before any vLLM starts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_cli
from studykit.params import ParamsError, load_study, parse_study
from studykit.engine.preflight import PreflightError
from studykit.engine.preflight import check_cluster
from studykit.engine.ray_cluster import parse_ray_status

DATA = Path(__file__).parent / "data" / "ascend"
PROFILE = ROOT / "params" / "bitcpm4-0.5b-ascend-2x8-ray.yaml"


def test_ray_status_parsed_from_real_outputs():
    one = parse_ray_status((DATA / "ray-status-1node-8npu.txt").read_text())
    two = parse_ray_status((DATA / "ray-status-2nodes-16npu.txt").read_text())
    assert one["active_nodes"] == 1 and one["resources"]["NPU"] == {"used": 0.0, "total": 8.0}
    assert two["active_nodes"] == 2 and two["resources"]["NPU"]["total"] == 16.0
    with pytest.raises(ValueError, match="Node status"):
        parse_ray_status("Traceback (most recent call last):\nConnectionError: ray is not running")


def test_preflight_passes_a_full_cluster_and_names_what_is_short():
    study = load_study(PROFILE)
    facts = check_cluster(study, (DATA / "ray-status-2nodes-16npu.txt").read_text())
    assert facts == {"ray_active_nodes": 2, "ray_npu_total": 16.0, "ray_npu_free": 16.0}
    with pytest.raises(PreflightError) as info:
        check_cluster(study, (DATA / "ray-status-1node-8npu.txt").read_text())
    msg = str(info.value)
    assert "1 active nodes, the ray block lists 2" in msg and "8 free NPU" in msg and "needs 16" in msg
    assert "--dry-run" in msg  # says how to start the missing nodes


def test_preflight_without_a_cluster_or_ray_stops_with_the_reason(tmp_path, monkeypatch):
    study = load_study(PROFILE)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `ray` on PATH
    with pytest.raises(PreflightError, match="`ray` is not installed"):
        check_cluster(study)
    fake = tmp_path / "ray"
    fake.write_text("#!/bin/sh\necho 'ConnectionError: Could not find any running Ray instance.' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(PreflightError, match="no Ray cluster to join"):
        check_cluster(study)


def test_ray_block_must_fit_the_parallel_sizes_and_the_backend(tmp_path):
    data = yaml.safe_load(PROFILE.read_text())
    few = {**data, "ray": {**data["ray"], "nodes": data["ray"]["nodes"][:1]}}
    with pytest.raises(ParamsError, match="1 nodes give 8 NPUs, fewer than tensor x pipeline x data parallel = 16"):
        parse_study(few)
    mp = {**data, "server": {**data["server"], "distributed_executor_backend": "mp"}}
    with pytest.raises(ParamsError, match="allowed with a ray block: 'ray'"):
        parse_study(mp)


def test_dry_run_prints_each_nodes_exports_and_ray_start_then_the_serve_command(tmp_path):
    r = run_cli("run", str(PROFILE), "--dry-run", env={"STUDYKIT_CACHE": str(tmp_path)}, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    cluster = out.split("## cluster", 1)[1].split("## deploy", 1)[0]
    head, worker = cluster.split("# on node 1")
    for block, ip in ((head, "192.0.2.10"), (worker, "192.0.2.11")):
        assert f"export HCCL_IF_IP={ip}" in block and "export GLOO_SOCKET_IFNAME=enp189s0f0" in block
        assert "export TP_SOCKET_IFNAME=enp189s0f0" in block and "export HCCL_CONNECT_TIMEOUT=1200" in block
        assert "export RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES=1" in block
        assert "export ASCEND_RT_VISIBLE_DEVICES=0,1,2,3,4,5,6,7" in block
    assert "ray start --head --port=6379 --node-ip-address=192.0.2.10" in head
    assert "ray start --address=192.0.2.10:6379 --node-ip-address=192.0.2.11" in worker
    assert "ray status" in cluster
    assert out.index("## cluster") < out.index("vllm serve")
    serve = next(line for line in out.splitlines() if line.startswith("vllm serve"))
    args = shlex.split(serve)
    flag = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
    assert (flag["--tensor-parallel-size"], flag["--pipeline-parallel-size"],
            flag["--distributed-executor-backend"]) == ("8", "2", "ray")
