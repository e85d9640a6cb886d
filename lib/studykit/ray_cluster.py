"""A multi-node Ray cluster for vllm-ascend (`server.distributed_executor_backend: ray` with a `ray` block): what
each node runs before vLLM starts, and the check that the cluster is there.

The commands follow vllm-ascend's Ray tutorial (docs/source/tutorials/features/ray.md): on every node the
network and device variables are exported *before* `ray start` (Ray workers inherit them; changing them needs a
Ray restart), the head runs `ray start --head`, the others join it; `vllm serve` then runs on the head alone with
tensor x pipeline parallel spanning the nodes (common practice: TP = NPUs per node, PP = nodes).
"""

from __future__ import annotations

import re
import shlex
import subprocess

from .plan import Step

# Ray would otherwise set ASCEND_RT_VISIBLE_DEVICES itself for its workers (vllm-ascend: set it for Ray > 2.1).
NOSET = {"RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES": "1"}


def node_env(study, index: int) -> dict[str, str]:
    node, ray = study.ray.nodes[index], study.ray
    return {"HCCL_IF_IP": node.ip, "GLOO_SOCKET_IFNAME": ray.nic_name, "TP_SOCKET_IFNAME": ray.nic_name, **NOSET,
            "ASCEND_RT_VISIBLE_DEVICES": node.devices, **study.npu.hccl_env}


def start_argv(study, index: int) -> list[str]:
    ray, node = study.ray, study.ray.nodes[index]
    if index == 0:
        return ["ray", "start", "--head", f"--port={ray.port}", f"--node-ip-address={node.ip}"]
    return ["ray", "start", f"--address={ray.nodes[0].ip}:{ray.port}", f"--node-ip-address={node.ip}"]


def cluster_steps(study) -> list[Step]:
    """Per node, in order (head first): its exports and `ray start`; then `ray status` on the head, which the
    preflight reads (nodes and NPUs) before any vLLM starts."""
    steps = []
    for i, node in enumerate(study.ray.nodes):
        exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in node_env(study, i).items())
        role = "head" if i == 0 else "worker"
        steps.append(Step("cluster", f"node {i} ({role}, {node.ip})", "python",
                          text=f"# on node {i} ({role}, {node.ip}):\n{exports}\n{shlex.join(start_argv(study, i))}"))
    world = _world(study)
    steps.append(Step("cluster", "ray status", "command", ["ray", "status"],
                      text=f"ray status  # on the head: {len(study.ray.nodes)} active nodes and >= {world} NPU "
                           "are required before vllm serve starts"))
    return steps


def _world(study) -> int:
    s = study.server
    return s.tensor_parallel_size * s.pipeline_parallel_size * s.data_parallel_size


_ACTIVE = re.compile(r"^\s*Active:\s*$")
_NODE = re.compile(r"^\s+\d+\s+node_[0-9a-f]+")
_RESOURCE = re.compile(r"^\s*([\d.]+)(?:[KMGT]?i?B)?/([\d.]+)(?:[KMGT]?i?B)?\s+(\S+)")


def parse_ray_status(text: str) -> dict:
    """`ray status` → {"active_nodes": n, "resources": {name: {"used": x, "total": y}}}."""
    lines = text.splitlines()
    active, in_active = 0, False
    resources: dict[str, dict[str, float]] = {}
    in_usage = False
    for line in lines:
        if _ACTIVE.match(line):
            in_active = True
            continue
        if in_active:
            if _NODE.match(line):
                active += 1
                continue
            in_active = False
        if line.strip().endswith("Usage:"):  # "Usage:" (older Ray) or "Total Usage:"
            in_usage = True
            continue
        if in_usage:
            m = _RESOURCE.match(line)
            if m:
                resources[m.group(3)] = {"used": float(m.group(1)), "total": float(m.group(2))}
            elif line.strip() and not line.startswith(" "):
                in_usage = False
    if "Node status" not in text:
        raise ValueError("not the output of `ray status` (no 'Node status' section)")
    return {"active_nodes": active, "resources": resources}


def check_cluster(study, status_text: str | None = None) -> dict:
    """Raise PreflightError unless `ray status` shows every node of the ray block and enough free NPUs."""
    from .preflight import PreflightError

    if status_text is None:
        try:
            proc = subprocess.run(["ray", "status"], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise PreflightError("server.distributed_executor_backend is ray, but `ray` is not installed here; "
                                 "start the cluster as `studykit run --dry-run` shows (section cluster)") from None
        if proc.returncode != 0:
            raise PreflightError(f"`ray status` failed ({proc.returncode}): no Ray cluster to join; start it as "
                                 f"`studykit run --dry-run` shows (section cluster).\n{proc.stderr.strip()[-800:]}")
        status_text = proc.stdout
    try:
        status = parse_ray_status(status_text)
    except ValueError as err:
        raise PreflightError(f"`ray status` answered something the kit cannot read: {err}") from None
    want_nodes, world = len(study.ray.nodes), _world(study)
    npu = status["resources"].get("NPU", {"used": 0.0, "total": 0.0})
    free = npu["total"] - npu["used"]
    short = []
    if status["active_nodes"] < want_nodes:
        short.append(f"{status['active_nodes']} active nodes, the ray block lists {want_nodes}")
    if free < world:
        short.append(f"{free:g} free NPU ({npu['used']:g} used of {npu['total']:g}), tensor x pipeline x data "
                     f"parallel needs {world}")
    if short:
        raise PreflightError("the Ray cluster is short: " + "; ".join(short)
                             + ". Start or join the missing nodes as `studykit run --dry-run` shows (section cluster).")
    return {"ray_active_nodes": status["active_nodes"], "ray_npu_total": npu["total"], "ray_npu_free": free}
