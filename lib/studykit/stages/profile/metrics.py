"""The profile stage's rows of the metric table (studykit.schema.metrics): the first window's (the smallest
concurrency, batch 1 by default); the report's §5.5 table shows every window."""

from studykit.schema.metrics import Metric

W = "windows.0"

METRICS: tuple[Metric, ...] = (
    Metric("profile.ms_per_output_token", f"{W}.ms_per_output_token_off", "ms/token",
           "Decode time per token, profiler off", "Decode 单 token 时延(未开启 profiler)", "derived",
           "(last - first token arrival) / (tokens - first chunk's), mean over the requests and the unprofiled "
           "windows"),
    Metric("profile.overhead", f"{W}.overhead", "ratio", "Profiler overhead", "Profiler 开销", "derived",
           "mean profiled / mean unprofiled ms per token - 1"),
    Metric("profile.spread_off", f"{W}.spread_off", "ratio", "Spread of the unprofiled windows",
           "未开启 profiler 的窗口之间的离散度", "derived", "(max - min) / mean ms per token of the unprofiled windows"),
    Metric("profile.mean_period_ms", f"{W}.split.mean_period_ms", "ms", "Decode step period (traced)",
           "Decode 单步周期(trace)", "derived", "step annotation start to the next one's, mean over decode steps"),
    Metric("profile.mean_in_model_ms", f"{W}.split.mean_in_model_ms", "ms", "Inside the model's forward",
           "模型前向内耗时", "derived", "the 'gpu_model_runner: forward' scope per step"),
    Metric("profile.mean_outside_model_ms", f"{W}.split.mean_outside_model_ms", "ms", "Outside the model's forward",
           "模型前向外耗时", "derived", "period - inside the forward"),
    Metric("profile.mean_idle_ms", f"{W}.split.mean_idle_ms", "ms", "No operator running", "无算子运行的时间",
           "derived", "period - union of operator intervals"),
    Metric("profile.outside_share", f"{W}.split.outside_share", "share", "Share of a step outside the model",
           "单步中模型外耗时占比", "derived", "mean outside / mean period"),
    Metric("profile.decode_steps", f"{W}.split.decode_steps", "steps", "Decode steps traced", "trace 中的 Decode 步数",
           "kit"),
    Metric("profile.joules_per_token", f"{W}.energy.joules_per_token", "J/token", "Energy per output token",
           "单 token 能耗", "derived", "energy of the unprofiled window / its output tokens"),
    Metric("profile.tokens_per_joule", f"{W}.energy.tokens_per_joule", "tokens/J", "Output tokens per joule",
           "每焦耳输出 token 数", "derived", "output tokens / energy of the unprofiled window"),
)
