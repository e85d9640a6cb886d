"""The accuracy stage's rows of the metric table (studykit.schema.metrics)."""

from studykit.schema.metrics import Metric


METRICS: tuple[Metric, ...] = (
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
)
