"""Metric ids: the one table of every number a report shows or a reference file compares.

An id is `<stage>.<name>`; its `path` says where the number sits in results/<stage>.json (checked against the
stage's model by the tests), `source` says who produced it: `vllm` (vLLM measured and named it), `derived`
(the kit computed it from vLLM's numbers; the report marks it), `kit` (the kit measured it).
Serve metrics are the headline sweep point's mean over repeats (vLLM's own value when there is one repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Metric:
    id: str
    path: str
    unit: str
    en: str
    zh: str
    source: Literal["vllm", "derived", "kit"] = "vllm"
    how: str = ""

    @property
    def stage(self) -> str:
        return self.id.split(".", 1)[0]


def _serve(name: str, unit: str, en: str, zh: str) -> Metric:
    return Metric(f"serve.{name}", f"points.0.metrics.{name}.mean", unit, en, zh)


METRICS: tuple[Metric, ...] = (
    Metric("deploy.dummy_gate_ready_s", "dummy_gate.ready_seconds", "s", "Time to ready, dummy weights",
           "启动验证就绪耗时 (dummy 权重)", "kit"),
    Metric("deploy.real_gate_ready_s", "real_gate.ready_seconds", "s", "Time to ready, real weights",
           "启动验证就绪耗时 (真实权重)", "kit"),
    Metric("latency.avg_latency", "avg_latency", "s", "Average latency", "平均时延"),
    Metric("latency.p50_latency_s", "p50_latency_s", "s", "P50 latency", "P50 时延"),
    Metric("latency.p90_latency_s", "p90_latency_s", "s", "P90 latency", "P90 时延"),
    Metric("latency.p99_latency_s", "p99_latency_s", "s", "P99 latency", "P99 时延"),
    Metric("latency.prefill_ms", "prefill_ms", "ms", "Prefill + first token (output_len 1 run)",
           "Prefill 时延 (output_len 1)", "vllm", "avg_latency of the output_len 1 run"),
    Metric("latency.decode_ms_per_token", "decode_ms_per_token", "ms/token", "Steady decode time per token",
           "Decode 单 token 时延", "derived", "(latency(N) - latency(1)) / (N - 1)"),
    Metric("latency.naive_ms_per_token", "naive_ms_per_token", "ms/token", "Latency / output tokens (seed's method)",
           "单 token 平均时延 (总时延 ÷ 输出 token 数,含 Prefill)", "derived", "avg_latency / output_len; prefill included"),
    Metric("latency.output_tokens_per_s", "output_tokens_per_s", "tokens/s", "Output tokens per second",
           "输出 token 吞吐", "derived", "batch_size x output_len / avg_latency"),
    Metric("latency.roofline_achieved_gbps", "roofline.achieved_gbps", "GB/s", "Decode weight traffic",
           "实测访存带宽", "derived", "weight bytes / steady decode time per token"),
    Metric("latency.roofline_limit_gbps", "roofline.limit_gbps", "GB/s", "Memory bandwidth limit",
           "内存带宽上限", "kit"),
    Metric("latency.roofline_efficiency_percent", "roofline.efficiency_percent", "%", "Share of the bandwidth limit",
           "带宽利用率", "derived"),
    Metric("throughput.requests_per_second", "requests_per_second", "req/s", "Request throughput", "请求吞吐"),
    Metric("throughput.tokens_per_second", "tokens_per_second", "tokens/s", "Total token throughput",
           "总 token 吞吐"),
    Metric("throughput.output_tokens_per_s", "output_tokens_per_s", "tokens/s", "Output token throughput",
           "输出 token 吞吐", "derived", "total_output_tokens / elapsed_time"),
    Metric("throughput.total_prompt_tokens", "total_prompt_tokens", "tokens", "Prompt tokens processed",
           "处理总 prompt tokens", "derived", "total_num_tokens - num_requests x output_len"),
    Metric("throughput.total_output_tokens", "total_output_tokens", "tokens", "Output tokens generated",
           "生成总 output tokens", "derived", "num_requests x output_len (vLLM's JSON has no output count)"),
    Metric("throughput.printed_prompt_tokens", "vllm_printed.total_prompt_tokens", "tokens",
           "Prompt tokens (vLLM's printed count)", "prompt tokens (vLLM 输出)"),
    Metric("throughput.printed_output_tokens", "vllm_printed.total_output_tokens", "tokens",
           "Output tokens (vLLM's printed count)", "output tokens (vLLM 输出)"),
    Metric("throughput.elapsed_time", "elapsed_time", "s", "Elapsed time", "总耗时"),
    _serve("request_throughput", "req/s", "Request throughput", "请求吞吐"),
    _serve("output_throughput", "tokens/s", "Output token throughput", "输出 token 吞吐"),
    _serve("total_token_throughput", "tokens/s", "Total token throughput", "总 token 吞吐"),
    _serve("max_output_tokens_per_s", "tokens/s", "Peak output token throughput", "峰值输出 token 吞吐"),
    _serve("mean_ttft_ms", "ms", "Mean TTFT", "平均首 token 时延 (TTFT)"),
    _serve("median_ttft_ms", "ms", "Median TTFT", "首 token 时延 (TTFT) 中位数"),
    _serve("p99_ttft_ms", "ms", "P99 TTFT", "首 token 时延 (TTFT) P99"),
    _serve("mean_tpot_ms", "ms", "Mean TPOT", "平均每个输出 token 时延 (TPOT)"),
    _serve("median_tpot_ms", "ms", "Median TPOT", "每个输出 token 时延 (TPOT) 中位数"),
    _serve("p99_tpot_ms", "ms", "P99 TPOT", "每个输出 token 时延 (TPOT) P99"),
    _serve("mean_itl_ms", "ms", "Mean ITL", "平均 token 间时延 (ITL)"),
    _serve("p99_itl_ms", "ms", "P99 ITL", "token 间时延 (ITL) P99"),
    _serve("mean_e2el_ms", "ms", "Mean end-to-end latency", "平均端到端时延 (E2EL)"),
    _serve("completed", "requests", "Completed requests", "完成请求数"),
    Metric("accuracy.token_agreement_excluding_near_ties", "free_running.token_agreement_excluding_near_ties", "",
           "Free-running token agreement up to the first real divergence (near ties excluded)",
           "Token 一致率 (自由生成, 截至首个真实分歧, 不计近似平局)", "kit",
           "tokens before each prompt's first divergence / all tokens except those after a near tie"),
    Metric("accuracy.token_agreement", "free_running.token_agreement", "",
           "Free-running token agreement, raw (seed's measure)", "Token 一致率 (自由生成, 原始, 原报告算法)", "kit",
           "position-wise equal tokens / all tokens; not gating"),
    Metric("accuracy.real_divergences", "free_running.real_divergences", "prompts",
           "Prompts whose first divergence is real (margin > near_tie_margin)",
           "首个分歧为真实分歧的 prompt 数 (概率差 > near_tie_margin)", "kit"),
    Metric("accuracy.near_ties", "free_running.near_ties", "prompts",
           "Prompts whose first divergence is a near tie (margin <= near_tie_margin)",
           "首个分歧为近似平局的 prompt 数 (概率差 <= near_tie_margin)", "kit"),
    Metric("accuracy.top1_agreement", "teacher_forced.top1_agreement", "", "Teacher-forced top-1 agreement",
           "Top-1 一致率 (Teacher Forcing)", "kit"),
    Metric("accuracy.prob_mae", "teacher_forced.prob_mae", "", "Probability mean absolute error",
           "概率分布平均绝对误差 (MAE)", "kit"),
    Metric("accuracy.prob_max_error", "teacher_forced.prob_max_error", "", "Probability max error", "最大概率误差",
           "kit"),
    Metric("accuracy.mean_kl", "teacher_forced.mean_kl", "nats", "Mean KL divergence", "平均 KL 散度", "kit"),
    Metric("accuracy.mean_topk_overlap", "teacher_forced.mean_topk_overlap", "", "Top-k overlap", "Top-k 重合率",
           "kit"),
    Metric("accuracy.max_margin_shift", "teacher_forced.max_margin_shift", "", "Largest shift of the top-2 margin",
           "Top-2 概率差最大偏移", "kit",
           "max over positions of |(q1 - q2) - (p1 - p2)|, 1 and 2 the reference's top two tokens; near ties are "
           "judged against it"),
    Metric("functional.prefix_cache_hit_rate", "prefix_caching.hit_rate", "", "Prefix cache hit rate",
           "前缀缓存 (Prefix Caching) 命中率", "vllm", "vllm:prefix_cache_hits_total / queries_total over the test requests"),
    Metric("functional.prefix_cache_hit_tokens", "prefix_caching.hit_tokens", "tokens", "Prefix cache hit tokens",
           "前缀缓存命中 tokens"),
    Metric("functional.chunked_prefill_prompt_tokens", "chunked_prefill.prompt_tokens", "tokens",
           "Long prompt completed with chunked prefill", "分块预填充 (Chunked Prefill) 长 prompt tokens", "kit"),
)

BY_ID: dict[str, Metric] = {m.id: m for m in METRICS}


def stage_metrics(stage: str) -> list[Metric]:
    return [m for m in METRICS if m.stage == stage]


class UnknownMetric(KeyError):
    pass


def metric(metric_id: str) -> Metric:
    try:
        return BY_ID[metric_id]
    except KeyError:
        close = [m for m in BY_ID if m.split(".", 1)[0] == metric_id.split(".", 1)[0]]
        raise UnknownMetric(f"unknown metric id {metric_id!r}; known for this stage: {', '.join(close) or 'none'}"
                            ) from None


_MISSING = object()


def dig(data: Any, path: str | list, default: Any = None) -> Any:
    """`dig(d, "a.b.0.c")`: nested lookup through dicts and lists (negative indices too); default when any step
    is missing. The one path reader of metric ids, reference files and the report."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    cur = data
    for part in parts:
        if isinstance(cur, dict):
            cur = cur.get(part, _MISSING)
        elif isinstance(cur, list) and str(part).lstrip("-").isdigit():
            i = int(part)
            cur = cur[i] if -len(cur) <= i < len(cur) else _MISSING
        else:
            return default
        if cur is _MISSING:
            return default
    return cur


def value_of(m: Metric, result: dict | None) -> float | int | None:
    v = dig(result, m.path) if result else None
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
