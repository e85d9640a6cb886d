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

from studykit.plan import Step

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
    world = study.server.world_size
    steps.append(Step("cluster", "ray status", "command", ["ray", "status"],
                      text=f"ray status  # on the head: {len(study.ray.nodes)} active nodes and >= {world} NPU "
                           "are required before vllm serve starts"))
    return steps


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


