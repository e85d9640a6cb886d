"""A short probe of the machine a run ran on, taken on the engine's cores before any engine starts, so two runs
can tell "the host is slower" from "the software is slower": memory copy bandwidth (the roofline's probe) and a
fixed fp32 matmul (GFLOP/s; torch's bf16 matmul on CPU falls back to a slow path on hosts without AMX, which
would measure the fallback rather than the machine). `studykit compare` divides each metric's change by the probe it depends
on (decode: bandwidth; prefill: compute)."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from studykit.engine.roofline import probe_bandwidth

MATMUL_N = 1024  # a 1024^3 matmul: about 2.1 GFLOP, tens of ms on a 2-core host


def matmul_gflops(threads: int, dtype: str = "float32", n: int = MATMUL_N, repeats: int = 5) -> dict[str, Any]:
    """Best and median GFLOP/s of an n x n by n x n matmul in torch on `threads` threads (2 n^3 flops each)."""
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"matmul_gflops: threads={threads!r}; allowed: an integer >= 1")
    import torch

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(dtype)
    if torch_dtype is None:
        raise ValueError(f"matmul_gflops: dtype {dtype!r}; allowed: float32, bfloat16")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.rand(n, n, generator=gen).to(torch_dtype)
        b = torch.rand(n, n, generator=gen).to(torch_dtype)
        torch.mm(a, b)  # warm-up: first call allocates and picks kernels
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    flops = 2 * n**3
    return {"dtype": dtype, "n": n, "threads": threads, "repeats": repeats,
            "gflops": flops / min(times) / 1e9, "median_gflops": flops / statistics.median(times) / 1e9}


def machine_probe(cores: list[int] | None = None) -> dict[str, Any]:
    """Bandwidth and compute on `cores` (default: every core this process may use), pinned there while it runs."""
    cores = sorted(cores or os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        t0 = time.monotonic()
        bw = probe_bandwidth(len(cores), size_mb=128, repeats=5)
        fp32 = matmul_gflops(len(cores), "float32")
    finally:
        os.sched_setaffinity(0, before)
    return {"cores": cores, "threads": len(cores), "bandwidth_gbps": bw["bandwidth_gbps"],
            "bandwidth_method": bw["method"], "compute_gflops": fp32["gflops"], "compute_dtype": "float32",
            "matmul": fp32, "seconds": round(time.monotonic() - t0, 2)}
