"""The tasks stage: lm-evaluation-harness task scores on vLLM and on the transformers reference, paired.

data     task sources (the kit's offline tasks, local data files in lm-eval's forms, fetched dataset
         directories) and input validation
lmeval   the lm-eval invocations (one `plan` for the notebook and the dry run) and its per-sample logs
stats    parity statistics: Wilson intervals, the paired difference (Agresti-Min), McNemar's exact test
stage    the stage itself: validate, run both backends, compare (repeats and deciding ties left out), gate
checks   its checks: items paired, parse checks of the logs, the paired gate, the baseline (point comparison)
fetch    `studykit data fetch`: datasets from ModelScope at a pinned revision
"""
