"""A run directory read into plain typed structures. Reading only: nothing here measures or recomputes.

Every accessor is defensive: a stage that did not run, a key another stage's author renamed, a half-written
run — all show up as None (rendered "—"), never as a crash, because a report of a failed run matters most.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from studykit.evidence.journal import read_commands
from studykit.stages import STAGE_ORDER
from studykit.evidence.rundir import RunLayout
from studykit.schema import ResultError, validate_result
from studykit.schema.metrics import dig

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
    status: str  # passed | failed | interrupted | running | not run
    error: str | None = None
    result: dict | None = None
    run_record: dict = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        return self.status != "not run"

    @property
    def checks(self) -> list[dict]:
        checks = dig(self.result, "checks") or []
        return [c for c in checks if isinstance(c, dict)]

    def get(self, path: str, default: Any = None) -> Any:
        return dig(self.result, path, default)


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
        return self.study.get(block) or {}

    @property
    def model_dir(self) -> Path | None:
        """The served checkpoint: deploy.json's model_dir, else any stage's, else a command note's."""
        for st in self.stages.values():
            md = st.get("model_dir")
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
    requested = run.get("requested_stages") or study.get("stages") or list(STAGE_ORDER)
    stages = {}
    for name in STAGE_ORDER:
        result, err = _read_json(layout.result(name))
        if err:
            problems.append(err)
        result = result if isinstance(result, dict) else None
        if result is not None:
            try:
                validate_result(name, result, f"results/{name}.json")
            except ResultError as bad:
                # Shown at the top of the report: a file outside the contract is a kit bug, not a detail.
                problems.append(str(bad))
        rec = dig(run, ["stages", name]) or {}
        status = rec.get("status") or (result or {}).get("status") or "not run"
        error = rec.get("error") or (result or {}).get("error")
        if status == "failed" and not error:
            error = "; ".join((result or {}).get("failures") or []) or None
        stages[name] = StageView(name, name in requested, status, error, result, rec)
    return Run(root, run, study, env if isinstance(env, dict) else None, stages, read_commands(root), problems)
