"""Memory roofline of decode: each decode step of a small batch reads every weight once, so

    achieved bytes/s = weight bytes / steady decode seconds per token (per step)

against the memory bandwidth limit: on CPU a short copy-bandwidth probe (numpy), unless
study.cpu.memory_bandwidth_gbps overrides it; on NPU the card's HBM bandwidth from study.npu.hbm_bandwidth_gbps.
The model assumes weights dominate traffic (KV cache reads at these lengths are small, activations stay in
cache) and that the batch shares one weight read per step; it ignores compute limits, so on CPU the
efficiency also reflects Python/engine overhead per step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def copy_bandwidth_gbps(size_mb: int = 256, repeats: int = 5) -> dict[str, Any]:
    """Best-of-N numpy copy of a size_mb buffer; a copy reads and writes, so bytes moved = 2 x size."""
    import numpy as np

    n = size_mb * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages first: first-touch page faults are not bandwidth
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"probe": "numpy copyto", "buffer_mib": size_mb, "repeats": repeats,
            "bytes_moved_per_copy": 2 * src.nbytes, "best_s": best,
            "bandwidth_gbps": 2 * src.nbytes / best / 1e9,
            "median_bandwidth_gbps": 2 * src.nbytes / sorted(times)[len(times) // 2] / 1e9}


def bandwidth_limit(study) -> dict[str, Any]:
    if study.platform == "npu":
        return {"source": "params npu.hbm_bandwidth_gbps", "bandwidth_gbps": study.npu.hbm_bandwidth_gbps}
    if study.cpu.memory_bandwidth_gbps:
        return {"source": "params cpu.memory_bandwidth_gbps", "bandwidth_gbps": study.cpu.memory_bandwidth_gbps}
    return {"source": "copy-bandwidth probe", **copy_bandwidth_gbps()}


def roofline(weight_bytes: int, decode_s_per_token: float, limit_gbps: float) -> dict[str, Any]:
    achieved = weight_bytes / decode_s_per_token
    bound_s = weight_bytes / (limit_gbps * 1e9)
    return {"weight_bytes": weight_bytes, "decode_ms_per_token": decode_s_per_token * 1000,
            "achieved_gbps": achieved / 1e9, "limit_gbps": limit_gbps,
            "efficiency_percent": 100 * achieved / (limit_gbps * 1e9),
            "bound_decode_ms_per_token": bound_s * 1000, "bound_tokens_per_s_per_seq": 1 / bound_s}


def latency_roofline(study, model_dir: str | Path, decode_ms_per_token: float | None) -> dict[str, Any]:
    from .weights import weight_bytes

    if not decode_ms_per_token or decode_ms_per_token <= 0:
        return {"skipped": f"no positive steady decode time (got {decode_ms_per_token!r})"}
    limit = bandwidth_limit(study)
    out = roofline(weight_bytes(Path(model_dir)), decode_ms_per_token / 1000, limit["bandwidth_gbps"])
    out["limit"] = limit
    out["assumes"] = ("every decode step reads all weights once (batch shares it); KV cache and activation "
                      "traffic ignored; no compute bound")
    return out


def serve_roofline(study, model_dir: str | Path, points: list[dict[str, Any]],
                   limit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per serve point: a decode step serves every running sequence and reads the weights once, and the mean
    TPOT is the step time seen by one sequence, so achieved bytes/s = weight bytes / mean TPOT. Steps that
    also carry prefill chunks make TPOT longer, so this is a lower bound on the decode efficiency."""
    from .weights import weight_bytes

    limit = limit or bandwidth_limit(study)
    wb = weight_bytes(Path(model_dir))
    rows = []
    for pt in points:
        metrics = pt.get("metrics", {})
        tpot = (metrics.get("mean_tpot_ms") or {}).get("mean")
        if not tpot or tpot <= 0:
            continue
        r = roofline(wb, tpot / 1000, limit["bandwidth_gbps"])
        rows.append({"request_rate": pt["request_rate"], "max_concurrency": pt["max_concurrency"],
                     "max_concurrent_requests": (metrics.get("max_concurrent_requests") or {}).get("mean"),
                     "mean_tpot_ms": tpot, "achieved_gbps": r["achieved_gbps"],
                     "efficiency_percent": r["efficiency_percent"]})
    return {"limit": limit, "weight_bytes": wb, "points": rows,
            "assumes": "one weight read per decode step shared by the batch; step time = mean TPOT (includes "
                       "prefill chunks scheduled in the same steps, so efficiency is a lower bound)"}
