"""A run directory read for the report. Reading only: nothing here measures or recomputes.

Each results/<stage>.json is read through its stage's model (studykit.schema.validate_result), and the
sections read that typed result. A file that does not fit its model is not guessed at: it is a problem named at
the top of the report and its stage is shown as unreadable. A stage that did not run or a half-written run shows
up as None (rendered "—"), never as a crash, because a report of a failed run matters most. run.json,
params.yaml and commands.jsonl are the runner's bookkeeping, not stage results, and stay plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from studykit.evidence.journal import read_commands
from studykit.stages import DEFAULT_STAGES, STAGE_ORDER
from studykit.evidence.rundir import RunLayout
from studykit.schema import ResultError, validate_result
from studykit.schema.base import Check, StageResult
from studykit.schema.metrics import Metric, dig, value_of

MEASURING_STAGES = tuple(s for s in STAGE_ORDER if s != "report")


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, None
    except (ValueError, OSError) as err:
        return None, f"{path.name} is unreadable: {err}"


@dataclass
class StageView:
    name: str
    requested: bool
    status: str  # passed | failed | interrupted | running | not run | unreadable
    error: str | None = None
    result: StageResult | None = None
    run_record: dict = field(default_factory=dict)
    unreadable: str | None = None  # why results/<name>.json could not be read (not JSON, or not its model)

    @property
    def ran(self) -> bool:
        return self.status != "not run"

    @property
    def checks(self) -> list[Check]:
        return self.result.checks if self.result is not None else []

    @cached_property
    def data(self) -> dict | None:
        """The result's dump: what metric paths (schema.metrics) are read from with `dig`."""
        return self.result.model_dump() if self.result is not None else None

    def value(self, m: Metric) -> float | int | None:
        return value_of(m, self.data)


@dataclass
class Run:
    root: Path
    run: dict
    study: dict
    environment: dict | None
    stages: dict[str, StageView]
    commands: list[dict]
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run.get("study") or self.study.get("name") or self.root.parent.name

    def stage(self, name: str) -> StageView:
        return self.stages[name]

    def stage_commands(self, stage: str) -> list[dict]:
        return [c for c in self.commands if c.get("stage") == stage]

    def command(self, stage: str, label: str) -> dict | None:
        """Last record of a labelled command (a server's record is written when it stops)."""
        found = [c for c in self.commands if c.get("stage") == stage and c.get("label") == label]
        return found[-1] if found else None

    def params(self, block: str) -> dict:
        """A block of params.yaml (model, server, ...); a stage's own params are `stage_params`."""
        return self.study.get(block) or {}

    def stage_params(self, stage: str) -> dict:
        """The params a stage ran with, stored with its result; params.yaml's block only when the result has
        none (the stage did not run, or its file is unreadable)."""
        st = self.stages.get(stage)
        if st is not None and st.result is not None and st.result.params:
            return st.result.params
        return self.params(stage)

    @property
    def model_dir(self) -> Path | None:
        """The served checkpoint: deploy.json's model_dir, else any stage's, else a command note's."""
        for st in self.stages.values():
            md = getattr(st.result, "model_dir", None)
            if md:
                return self._resolve(md)
        for c in self.commands:
            md = dig(c, "extra.model_dir")
            if md:
                return self._resolve(md)
        return None

    def _resolve(self, p: str) -> Path:
        path = Path(p)
        # Relative paths (fixtures) are relative to the run directory, which makes a run portable.
        return path if path.is_absolute() else self.root / path


def load_run(run_dir: str | Path) -> Run:
    root = Path(run_dir)
    layout = RunLayout(root)
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {str(root)!r} does not exist")
    problems: list[str] = []
    run, err = _read_json(layout.run_json)
    if err:
        problems.append(err)
    run = run if isinstance(run, dict) else {}
    try:
        study = yaml.safe_load(layout.params.read_text(encoding="utf-8")) if layout.params.exists() else {}
    except yaml.YAMLError as e:
        problems.append(f"params.yaml is unreadable: {e}")
        study = {}
    study = study if isinstance(study, dict) else {}
    env, err = _read_json(layout.result("environment"))
    if err:
        problems.append(err)
    requested = run.get("requested_stages") or study.get("stages") or list(DEFAULT_STAGES)
    stages = {}
    for name in STAGE_ORDER:
        data, unreadable = _read_json(layout.result(name))
        result = None
        if data is not None and not isinstance(data, dict):
            unreadable = f"results/{name}.json is not a JSON object"
        elif data is not None:
            try:
                result = validate_result(name, data, f"results/{name}.json")
            except ResultError as bad:
                # A file outside the contract is a kit bug, not a detail: named at the top, never guessed at.
                unreadable = str(bad)
        if unreadable:
            problems.append(unreadable)
        rec = dig(run, ["stages", name]) or {}
        # what the report can vouch for: a stage whose file it cannot read is "unreadable" whatever run.json says
        # (run_record keeps the runner's word)
        status = "unreadable" if unreadable else rec.get("status") or (result.status if result else "not run")
        error = rec.get("error") or (result.error if result else None)
        if status == "failed" and not error and result is not None:
            error = "; ".join(result.failures) or None
        stages[name] = StageView(name, name in requested, status, error, result, rec, unreadable)
    return Run(root, run, study, env if isinstance(env, dict) else None, stages, read_commands(root), problems)
