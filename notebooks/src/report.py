# %% [markdown]
# # Report
# Writes `report.zh.md`, `report.en.md` and `report.html` (charts inlined, one shareable file) into the run
# directory, from its files only: `results/*.json`, `run.json`, `commands.jsonl`, logs and charts. Nothing is
# measured here. Sections follow the seed report; a stage that failed or did not run says so with its error.
# With `reference` set, every table gains reference and delta (%) columns.

# %% tags=["parameters"]
run_dir = ""  # help: run directory to report on; empty means the newest run of the study in params_path
params_path = ""  # help: study YAML; empty means the run's params.yaml, or the default study
reference = None  # help: previous run directory or reference file to compare with (e.g. params/reference/seed-bitcpm4-0.5b-ascend.yaml)
languages = ["zh", "en"]  # help: report languages, any of zh, en

# %%
from IPython.display import Markdown, display

from studykit.stages.report.stage import run_report_stage

ctx, summary = run_report_stage(run_dir, params_path, reference, languages)
print(f"report written in {summary['generation_seconds']} s:")
for name, path in summary["files"].items():
    print(" ", path)

# %% [markdown]
# ## The report (first language)

# %%
display(Markdown((ctx.run_dir / f"report.{summary['languages'][0]}.md").read_text(encoding="utf-8")))
