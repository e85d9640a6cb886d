"""The serve stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric


def _serve(name: str, unit: str, en: str, zh: str) -> Metric:
    return Metric(f"serve.{name}", f"points.0.metrics.{name}.mean", unit, en, zh)


METRICS: tuple[Metric, ...] = (
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
    Metric("serve.joules_per_token", "telemetry.0.energy.joules_per_token", "J/token", "Energy per output token",
           "单 token 能耗", "derived", "energy of the headline point's first run (vLLM's benchmark duration) / total_output_tokens"),
    Metric("serve.tokens_per_joule", "telemetry.0.energy.tokens_per_joule", "tokens/J", "Output tokens per joule",
           "每焦耳输出 token 数", "derived", "total_output_tokens / energy of the same window"),
)
