"""The latency stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric


METRICS: tuple[Metric, ...] = (
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
    Metric("latency.joules_per_token", "telemetry.0.energy.joules_per_token", "J/token", "Energy per output token",
           "单 token 能耗", "derived", "energy of the output_len N run's window (engine ready to the end of the bench) / batch_size x output_len x (warmup + measured iterations)"),
    Metric("latency.tokens_per_joule", "telemetry.0.energy.tokens_per_joule", "tokens/J", "Output tokens per joule",
           "每焦耳输出 token 数", "derived", "batch_size x output_len x (warmup + measured iterations) / energy of the same window"),
)
