"""The throughput stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric


METRICS: tuple[Metric, ...] = (
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
    Metric("throughput.joules_per_token", "telemetry.0.energy.joules_per_token", "J/token", "Energy per output token",
           "单 token 能耗", "derived", "energy of the bench's window (engine ready to the end) / total_output_tokens"),
    Metric("throughput.tokens_per_joule", "telemetry.0.energy.tokens_per_joule", "tokens/J", "Output tokens per joule",
           "每焦耳输出 token 数", "derived", "total_output_tokens / energy of the same window"),
)
