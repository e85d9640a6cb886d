"""Exact vllm command lines and environments for a study. Pure functions: the dry run prints these,
the stages run them, and tests compare them with the seed's commands."""

from __future__ import annotations

from pathlib import Path

from .commands import vllm_argv
from .params import Study


def platform_env(study: Study) -> dict[str, str]:
    env: dict[str, str] = {}
    if study.platform == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(study.cpu.kvcache_space_gib)
    else:
        env["ASCEND_RT_VISIBLE_DEVICES"] = study.npu.visible_devices
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
