"""The accuracy stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric


METRICS: tuple[Metric, ...] = (
    Metric("accuracy.real_divergences", "free_running.real_divergences", "positions",
           "Free-running positions that diverge for real (judged on the reference's context)",
           "自由生成中真实分歧的位置数 (在参考模型上下文中判定)", "kit",
           "vLLM's token differs and is not a near tie in both engines' probabilities; the gate"),
    Metric("accuracy.near_ties", "free_running.near_ties", "positions",
           "Free-running positions that diverge in a near tie (both engines' margins within noise)",
           "自由生成中近似平局的位置数 (两引擎的概率差均在噪声内)", "kit"),
    Metric("accuracy.position_agreement", "free_running.position_agreement", "",
           "Free-running agreement at every position on the reference's context",
           "Token 一致率 (自由生成, 逐位置, 参考模型上下文)", "kit", "agreeing positions / positions judged"),
    Metric("accuracy.token_agreement", "free_running.token_agreement", "",
           "Free-running token agreement, raw (seed's measure)", "Token 一致率 (自由生成, 原始, 原报告算法)", "kit",
           "position-wise equal tokens of the plain free run / all tokens; not gating"),
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
           "max over positions of |(q1 - q2) - (p1 - p2)|, 1 and 2 the reference's top two tokens"),
    Metric("accuracy.calibration_max_margin_shift", "calibration.max_margin_shift", "",
           "Calibration: largest top-2 margin shift, reference bf16 vs fp32",
           "校准: 参考模型 bf16 对 fp32 的 Top-2 概率差最大偏移", "kit", "near_tie_margin is a multiple of it"),
    Metric("accuracy.calibration_mean_kl", "calibration.mean_kl", "nats", "Calibration: mean KL, reference bf16 vs fp32",
           "校准: 参考模型 bf16 对 fp32 的平均 KL 散度", "kit", "max_mean_kl is a multiple of it"),
)
