"""The stage registry: a stage's name -> its package, imported only when asked for (as lm-eval's model table and
vLLM's bench subcommands are), so nothing imports every stage.

A stage is one package, `studykit/stages/<name>/`, with these modules (the registry finds them by name):

    params.py   `<Name>Params`: the stage's block of the study file (validated with the rest of the study)
    result.py   `<Name>Result`: the model of results/<name>.json
    stage.py    `plan(study, model_dir, run_dir, port) -> [Step]` (what the dry run prints and the notebook runs),
                `run(ctx, params) -> result`, and what its notebook shows
    checks.py   `checks(params, result) -> [Check]`, each with a stable id
    metrics.py  `METRICS`: its rows of the metric table (ids `<name>.<field>`, labels zh/en, units, paths)
    section.py  its parts of the report, by id (`SECTIONS`), and its rows of the summary (`SUMMARY`)

and its notebook `notebooks/<name>.ipynb` (source `notebooks/src/<name>.py`). Adding a stage: the package, its
notebook, and its name in STAGE_ORDER (and in OPT_IN when a study should run it only when it lists it).
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from types import ModuleType

STAGE_ORDER = ("deploy", "latency", "throughput", "serve", "profile", "accuracy", "tasks", "functional", "report")
# Stages a study runs only when its `stages:` (or `--stages`) names them: profile starts its own profiler-enabled
# server and records traces, which a default study does not need to pay for.
OPT_IN = ("profile",)
DEFAULT_STAGES = tuple(s for s in STAGE_ORDER if s not in OPT_IN)


class UnknownStage(KeyError):
    def __str__(self) -> str:
        return f"no stage {self.args[0]!r}; known: {', '.join(STAGE_ORDER)}"


def module(stage: str, part: str) -> ModuleType:
    """`studykit.stages.<stage>.<part>`, imported on first use."""
    if stage not in STAGE_ORDER:
        raise UnknownStage(stage)
    return importlib.import_module(f"{__name__}.{stage}.{part}")


def has_part(stage: str, part: str) -> bool:
    return stage in STAGE_ORDER and importlib.util.find_spec(f"{__name__}.{stage}.{part}") is not None


@cache
def params_model(stage: str) -> type:
    return getattr(module(stage, "params"), f"{stage.title()}Params")


@cache
def result_model(stage: str) -> type:
    return getattr(module(stage, "result"), f"{stage.title()}Result")


def metrics(stage: str) -> tuple:
    """The stage's rows of the metric table; none when it has no metrics.py."""
    return module(stage, "metrics").METRICS if has_part(stage, "metrics") else ()


def stage_plan(study, stage: str, model_dir, run_dir, port) -> list:
    """The Steps of one stage (`port` is PORT in a dry run)."""
    return module(stage, "stage").plan(study, model_dir, run_dir, port)
