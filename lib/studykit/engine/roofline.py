"""Memory roofline of decode: each decode step of a small batch reads every weight once, so

    achieved bytes/s = weight bytes / steady decode seconds per token (per step)

against the memory bandwidth limit. On CPU the limit is measured: a copy-bandwidth probe run on as many threads as
the engine decodes with (the cores of vLLM's OpenMP binding when its log says, else every core this process may
use), by two methods (numpy copies split over threads, which release the GIL; torch's own parallel copy), keeping
the one with the higher sustained (median) figure, and taking its best copy as the limit (as STREAM does: the best of
N repeats is what the memory delivers with the least interference). A single-threaded probe would understate what
the engine's threads can pull and so flatter the engine. study.cpu.memory_bandwidth_gbps overrides the probe. On NPU the limit is
the card's HBM bandwidth from study.npu.hbm_bandwidth_gbps: a spec, not a measurement.
The model assumes weights dominate traffic (KV cache reads at these lengths are small, activations stay in
cache) and that the batch shares one weight read per step; it ignores compute limits, so on CPU the
efficiency also reflects Python/engine overhead per step.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

PROBE_METHODS = ("numpy-threads", "torch-copy")
# vLLM CPU worker: "OpenMP thread binding info: ... local_rank=0, core ids=[0, 1]" (one line per rank).
_OMP_CORE_IDS = re.compile(r"\bcore ids=\[([\d,\s]*)\]")


def engine_cpu_cores(engine_log: str | Path | None = None) -> dict[str, Any]:
    """The cores the engine decodes on: the union of the `core ids=[...]` vLLM logs for its OpenMP binding (one
    list per rank), else every core this process may run on."""
    if engine_log is not None and Path(engine_log).is_file():
        cores: set[int] = set()
        for line in Path(engine_log).read_text(errors="replace").splitlines():
            m = _OMP_CORE_IDS.search(line)
            if m:
                cores.update(int(x) for x in m.group(1).replace(" ", "").split(",") if x)
        if cores:
            return {"cores": sorted(cores), "cores_from": f"vLLM OpenMP binding in {engine_log}"}
    return {"cores": sorted(os.sched_getaffinity(0)), "cores_from": "os.sched_getaffinity(0): every allowed core"}


def _numpy_threads_copy_s(src, dst, threads: int) -> float:
    """Seconds for `threads` threads to copy their slices of src into dst together (numpy drops the GIL while
    copying, so the slices move in parallel); timed from a common start to the last thread's end."""
    import numpy as np

    bounds = np.linspace(0, src.size, threads + 1, dtype=np.int64)
    start = threading.Barrier(threads + 1)

    def copy_slice(a: int, b: int) -> None:
        start.wait()
        np.copyto(dst[a:b], src[a:b])

    workers = [threading.Thread(target=copy_slice, args=(int(a), int(b))) for a, b in itertools.pairwise(bounds)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def copy_bandwidth_gbps(size_mb: int = 256, repeats: int = 5, threads: int = 1,
                        method: str = "numpy-threads") -> dict[str, Any]:
    """Copy a size_mb buffer `repeats` times on `threads` threads; a copy reads and writes, so bytes moved =
    2 x size. bandwidth_gbps is the best copy, median_bandwidth_gbps the sustained figure."""
    if method not in PROBE_METHODS:
        raise ValueError(f"copy_bandwidth_gbps: method {method!r}; allowed: {', '.join(PROBE_METHODS)}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"copy_bandwidth_gbps: threads={threads!r}; allowed: an integer >= 1")
    import numpy as np

    n = size_mb * 2**20 // 8
    times = []
    if method == "numpy-threads":
        src = np.ones(n, dtype=np.float64)
        dst = np.empty_like(src)
        _numpy_threads_copy_s(src, dst, threads)  # touch the pages first: first-touch page faults are not bandwidth
        for _ in range(repeats):
            times.append(_numpy_threads_copy_s(src, dst, threads))
        nbytes = src.nbytes
    else:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            src = torch.ones(n, dtype=torch.float64)
            dst = torch.empty_like(src)
            dst.copy_(src)
            for _ in range(repeats):
                t0 = time.perf_counter()
                dst.copy_(src)
                times.append(time.perf_counter() - t0)
        finally:
            torch.set_num_threads(before)
        nbytes = n * 8
    return {"probe": method, "threads": threads, "buffer_mib": size_mb, "repeats": repeats,
            "bytes_moved_per_copy": 2 * nbytes, "best_s": min(times),
            "bandwidth_gbps": 2 * nbytes / min(times) / 1e9,
            "median_bandwidth_gbps": 2 * nbytes / statistics.median(times) / 1e9}


def probe_bandwidth(threads: int, size_mb: int = 256, repeats: int = 5) -> dict[str, Any]:
    """Both probe methods on `threads` threads. The method with the higher median (sustained) copy bandwidth is
    kept, so one lucky copy cannot pick a method that is slower on the whole; the limit is that method's best copy,
    the least disturbed figure, so the roofline % does not rise when the host is busy. Both runs are kept."""
    runs = [copy_bandwidth_gbps(size_mb, repeats, threads, method) for method in PROBE_METHODS]
    chosen = max(runs, key=lambda r: r["median_bandwidth_gbps"])
    return {"source": "copy-bandwidth probe", "method": chosen["probe"], "threads": threads,
            "bandwidth_gbps": chosen["bandwidth_gbps"],
            "chosen_because": "higher median copy bandwidth of the two methods; the limit is its best copy",
            "runs": runs}


def bandwidth_limit(study, engine_log: str | Path | None = None) -> dict[str, Any]:
    """The limit the roofline is computed against. engine_log: a log of the engine whose decode is measured
    (bench latency, serve), read for the cores vLLM bound its OpenMP threads to."""
    if study.platform == "npu":
        return {"source": "spec", "spec": "params npu.hbm_bandwidth_gbps (HBM bandwidth of one card)",
                "bandwidth_gbps": study.npu.hbm_bandwidth_gbps}
    if study.cpu.memory_bandwidth_gbps:
        return {"source": "params cpu.memory_bandwidth_gbps", "bandwidth_gbps": study.cpu.memory_bandwidth_gbps}
    cores = engine_cpu_cores(engine_log)
    return {**probe_bandwidth(len(cores["cores"])), **cores}


def roofline(weight_bytes: int, decode_s_per_token: float, limit_gbps: float) -> dict[str, Any]:
    achieved = weight_bytes / decode_s_per_token
    bound_s = weight_bytes / (limit_gbps * 1e9)
    return {"weight_bytes": weight_bytes, "decode_ms_per_token": decode_s_per_token * 1000,
            "achieved_gbps": achieved / 1e9, "limit_gbps": limit_gbps,
            "efficiency_percent": 100 * achieved / (limit_gbps * 1e9),
            "bound_decode_ms_per_token": bound_s * 1000, "bound_tokens_per_s_per_seq": 1 / bound_s}


def latency_roofline(study, model_dir: str | Path, decode_ms_per_token: float | None,
                     engine_log: str | Path | None = None) -> dict[str, Any]:
    from studykit.weights.files import weight_bytes

    if not decode_ms_per_token or decode_ms_per_token <= 0:
        return {"skipped": f"no positive steady decode time (got {decode_ms_per_token!r})"}
    limit = bandwidth_limit(study, engine_log)
    out = roofline(weight_bytes(Path(model_dir)), decode_ms_per_token / 1000, limit["bandwidth_gbps"])
    out["limit"] = limit
    out["assumes"] = ("every decode step reads all weights once (batch shares it); KV cache and activation "
                      "traffic ignored; no compute bound")
    return out


def serve_roofline(study, model_dir: str | Path, points: list[dict[str, Any]],
                   limit: dict[str, Any] | None = None, engine_log: str | Path | None = None) -> dict[str, Any]:
    """Per serve point: a decode step serves every running sequence and reads the weights once, and the mean
    TPOT is the step time seen by one sequence, so achieved bytes/s = weight bytes / mean TPOT. Steps that
    also carry prefill chunks make TPOT longer, so this is a lower bound on the decode efficiency."""
    from studykit.weights.files import weight_bytes

    limit = limit or bandwidth_limit(study, engine_log)
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
