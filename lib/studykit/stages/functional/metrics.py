"""The functional stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric


METRICS: tuple[Metric, ...] = (
    Metric("functional.prefix_cache_hit_rate", "prefix_caching.hit_rate", "", "Prefix cache hit rate",
           "前缀缓存 (Prefix Caching) 命中率", "vllm", "vllm:prefix_cache_hits_total / queries_total over the test requests"),
    Metric("functional.prefix_cache_hit_tokens", "prefix_caching.hit_tokens", "tokens", "Prefix cache hit tokens",
           "前缀缓存命中 tokens"),
    Metric("functional.chunked_prefill_prompt_tokens", "chunked_prefill.prompt_tokens", "tokens",
           "Long prompt completed with chunked prefill", "分块预填充 (Chunked Prefill) 长 prompt tokens", "kit"),
)
