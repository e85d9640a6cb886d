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

from studykit.display import checks_frame
from studykit.runner.context import open_stage
from studykit.stages.report import checks, stage

ctx = open_stage("report", stage.run_dir_for(run_dir, params_path), params_path)
p = ctx.params(globals())

# %% [markdown]
# ## Build the report

# %%
result = stage.run(ctx, p)
print(f"report written in {result.generation_seconds} s:")
for name, path in result.files.items():
    print(" ", path)

# %% [markdown]
# ## The report (first language)

# %%
display(Markdown((ctx.run_dir / f"report.{result.languages[0]}.md").read_text(encoding="utf-8")))

# %% [markdown]
# ## Checks and record
# Every requested file is on disk, and the reference (when one is given) was read. `results/report.json` holds the
# files, the reference compared with and the checks of every stage counted. The stage fails only when a file is
# missing or the reference could not be read (the report says so at its top).

# %%
result.checks = checks.checks(p, result)
checks_frame(result.checks)

# %%
ctx.write(result)
