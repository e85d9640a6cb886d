"""The tasks stage: lm-evaluation-harness task scores on vLLM and on the transformers reference, paired.

data     task sources (the kit's offline tasks, local dataset directories) and input validation
lmeval   the lm-eval invocations (one `plan` for the notebook and the dry run) and its per-sample logs
stats    parity statistics: Wilson intervals, paired difference, McNemar's exact test
stage    the stage itself: validate, run both backends, compare
checks   its checks: items paired, per-item scores = lm-eval's, |delta| and the baseline within tolerance
fetch    `studykit data fetch`: datasets from ModelScope at a pinned revision
"""
