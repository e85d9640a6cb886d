"""`studykit compare RUN_A RUN_B [...]`: what differs between runs (params, packages, model files, machine), then
every metric both measured, with the change, its 95 % interval, a test suited to the data and a verdict.

samples.py  what a run measured, per metric, in the form a test needs (per-request, per-iteration, repeats,
            paired items, paired prompts, or one value)
differ.py   what differs between two runs, before any number
verdict.py  the statistics: intervals of the change, tests, Holm's correction, the verdict per metric
render.py   the table first (metric, A, B, change ± CI, verdict), what differs above it; Markdown and HTML
"""
