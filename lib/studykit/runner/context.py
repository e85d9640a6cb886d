"""What a stage notebook holds on to: the run directory, the study, the command journal, the model.

Notebooks call `open_stage(...)` in their first cell after the parameters and use the context for
everything that touches the outside world, so each cell stays a thin call.
"""

from __future__ import annotations

import json
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from studykit import KIT_ROOT
from studykit.engine import cmdline
from studykit.weights import store
from studykit.evidence.journal import CommandLog, CommandRecord, group_alive, utc_now
from studykit.params import Study, dump_study, load_study
from studykit.evidence.rundir import RunLayout, _jsonable, read_json, write_json, write_text
from studykit.stages import stage_plan
from studykit.display import show_png
from studykit.plan import Step, find
from studykit.engine.server import VllmServer, resolve_port

DEFAULT_PARAMS = KIT_ROOT / "params" / "smollm2-135m-cpu.yaml"


class StageFailed(RuntimeError):
    """Raised at the end of a stage whose results say failed, so papermill marks the notebook failed."""


class StageContext:
    def __init__(self, stage: str, run_dir: str | Path, study: Study):
        self.stage = stage
        self.layout = RunLayout(run_dir)
        self.layout.make_dirs()
        self.run_dir = self.layout.root
        self.study = study
        self.commands = CommandLog(run_dir, stage)
        self.started_utc = utc_now()
        self._t0 = time.monotonic()
        self._model_dir: Path | None = None
        self._port: int | None = None

    @property
    def model_dir(self) -> Path:
        """The checkpoint on disk, built or downloaded on first use and checked against its manifest."""
        if self._model_dir is None:
            from studykit.engine.preflight import check_model

            path = store.resolve(self.study, self.commands)
            check_model(self.study, path)  # e.g. auto_map without trust_remote_code: stop before vLLM starts
            self._model_dir = path
        return self._model_dir

    @property
    def raw_dir(self) -> Path:
        path = self.layout.raw_dir(self.stage)
        path.mkdir(parents=True, exist_ok=True)  # the stage writes there; the dry run's layout creates nothing
        return path

    def env(self) -> dict[str, str]:
        return cmdline.platform_env(self.study)

    @property
    def port(self) -> int:
        """The port this stage's servers listen on (one at a time), chosen once: a shared server's when this
        stage uses one that is running (its requests must go there), else a free one."""
        if self._port is None:
            live = [e for e in self._shared_entries().values() if group_alive(e["pid"])]
            self._port = live[0]["port"] if live else resolve_port(self.study.server.host, self.study.server.port)
        return self._port

    def _shared_keys(self) -> dict[str, list]:
        """Keys of this stage's server commands that the run shares with other stages (runner-set stages)."""
        from studykit.engine.shared import run_stages
        from studykit.runner.sharing import server_users

        names = run_stages()
        if not names or self.stage not in names:
            return {}
        users = server_users(self.study, names, self.model_dir)
        return {k: v for k, v in users.items() if self.stage in {s for s, _ in v}}

    def _shared_entries(self) -> dict[str, dict]:
        from studykit.engine.shared import load_registry

        keys = self._shared_keys()
        return {k: e for k, e in load_registry(self.run_dir).items() if k in keys and not e.get("stopped_utc")}

    def plan(self) -> list[Step]:
        """This stage's commands as `studykit run --dry-run` prints them (studykit.plan)."""
        return stage_plan(self.study, self.stage, self.model_dir, self.run_dir, self.port)

    def step(self, label: str) -> Step:
        return find(self.plan(), label)

    def server_for(self, step: Step) -> VllmServer:
        """The `vllm serve` of a planned server step; use as `with ctx.server_for(step) as srv:`."""
        from studykit.engine.shared import AttachedServer, register, server_key

        if step.kind != "server":
            raise ValueError(f"step {step.label!r} is a {step.kind} step, not a server")
        key = server_key(step.argv)
        shared = self._shared_keys().get(key)
        entry = self._shared_entries().get(key)
        if entry and group_alive(entry["pid"]):
            return AttachedServer(entry)
        server = VllmServer(step.argv, host=self.study.server.host, port=self.port,
                            env_extra={**self.env(), **step.env},
                            log_path=self.layout.logs / f"{self.stage}-{step.label}.log", commands=self.commands,
                            label=step.label, ready_timeout_s=self.study.server.ready_timeout_s,
                            pid_dir=self.layout.pids, keep_running=bool(shared))
        if shared:
            users = list(dict.fromkeys(s for s, _ in shared))
            server.on_ready.append(lambda srv: register(self.run_dir, key, {
                "stage": self.stage, "label": step.label, "users": users, "argv": srv.argv, "command": srv.command,
                "env": srv.shown_env, "host": srv.host, "port": srv.port, "pid": srv.proc.pid,
                "log": str(srv.log_path), "started_utc": srv.started_utc, "ready_seconds": srv.ready_seconds}))
        return server

    def server(self, label: str, *, load_format: str | None = None, enforce_eager: bool | None = None,
               extra: list[str] | tuple = ()) -> VllmServer:
        """An unplanned server (tests, hand experiments); stages use their planned steps."""
        argv = cmdline.serve_argv(self.study, self.model_dir, self.port, load_format=load_format,
                                 enforce_eager=enforce_eager, extra=extra)
        return self.server_for(Step(self.stage, label, "server", argv))

    def run_step(self, step: Step, timeout: float | None = None) -> CommandRecord:
        if step.kind != "command":
            raise ValueError(f"step {step.label!r} is a {step.kind} step, not a command")
        return self.commands.run(step.argv, label=step.label, env_extra={**self.env(), **step.env},
                                 log_path=self.raw_dir / f"{step.label.replace(' ', '-')}.log", timeout=timeout)

    def idle_power(self) -> dict[str, Any]:
        """{"idle_power_w": W} as the runner measured it before any engine started, or {"idle_not_run": why}. A
        stage run from its notebook without the runner has none: measured there, an engine left running by an
        earlier cell could be in it."""
        path = self.layout.idle_power()
        if path is None:
            return {"idle_not_run": "not measured: the runner measures it before any engine starts, and this stage "
                                    "ran without it (results/idle_power.json does not exist)"}
        return read_json(path)

    def chart_path(self, name: str) -> Path:
        self.layout.charts.mkdir(parents=True, exist_ok=True)
        return self.layout.charts / f"{self.stage}-{name}.png"

    def save_figure(self, fig, name: str, dpi: int = 100) -> str:
        """Write a matplotlib figure to charts/<stage>-<name>.png, close it, and return the path."""
        import matplotlib.pyplot as plt

        path = self.chart_path(name)
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        show_png(path)
        return str(path)

    # --- the run convention: params -> run -> checks -> write (each stage's notebook calls these) -------------

    def params(self, namespace: dict[str, Any]):
        """The stage's block as the notebook received it: its parameters cell's values (papermill-injected values
        win over the study file), picked by field name from `namespace` (pass `globals()`), validated by the
        schema and set on ctx.study so every command built from the study uses it. A field the notebook does not
        define keeps the study's value."""
        from pydantic import ValidationError

        from studykit.params import ParamsError, format_validation_error

        cls = type(getattr(self.study, self.stage))
        values = getattr(self.study, self.stage).model_dump()
        values.update({k: namespace[k] for k in cls.model_fields if k in namespace})
        try:
            block = cls.model_validate(values)
        except ValidationError as err:
            raise ParamsError(format_validation_error(err, f"{self.stage} notebook parameters")) from None
        self.study = self.study.model_copy(update={self.stage: block})
        return block

    @contextmanager
    def keep(self, data: dict[str, Any]):
        """`with ctx.keep(data):` around a stage's measurements: if anything raises, results/<stage>.json is
        written with what `data` holds so far and the error, and the stage fails (StageFailed)."""
        try:
            yield data
        except StageFailed:
            raise
        except Exception as err:  # noqa: BLE001 - any error of a stage is recorded with what was measured
            self.fail(err, partial=data)

    def result(self, data: dict[str, Any]):
        """The stage's typed result (studykit.stages.<stage>.result) from what it measured; status and checks
        are settled by `write`."""
        from studykit.schema import validate_result

        return validate_result(self.stage, self._document(data, []))

    def write(self, result) -> Path:
        """Write results/<stage>.json: failed when the stage recorded a failure or error or a check failed (the
        file is written first, then StageFailed is raised so the notebook stops there)."""
        from studykit.checks import failed

        data = result.model_dump(mode="json", exclude={"stage", "study", "status", "started_utc", "ended_utc",
                                                       "wall_seconds", "failures"})
        failures = list(result.failures) + ([result.error] if result.error and result.error not in result.failures
                                            else []) + failed(result.checks)
        return self.write_results(data, failures=failures)

    def _document(self, data: dict[str, Any], failures: list[str]) -> dict[str, Any]:
        doc = {"stage": self.stage, "study": self.study.name, "status": "failed" if failures else "passed",
               "failures": failures, "started_utc": self.started_utc, "ended_utc": utc_now(),
               "wall_seconds": round(time.monotonic() - self._t0, 3), **data}
        return json.loads(json.dumps(_jsonable(doc)))

    def write_results(self, data: dict[str, Any], failures: list[str] | None = None) -> Path:
        """Validate against the stage's results model and write results/<stage>.json; then raise StageFailed
        if anything failed, after the file is safe. A result the model rejects is a kit bug: what was measured
        is still written (results/<stage>.invalid.json) before the error is raised."""
        from studykit.schema import ResultError, validate_result

        failures = list(failures or [])
        doc = self._document(data, failures)
        try:
            model = validate_result(self.stage, doc)
        except ResultError:
            write_json(self.layout.results / f"{self.stage}.invalid.json", doc)
            raise
        path = write_json(self.layout.result(self.stage), model.model_dump(mode="json"))
        if failures:
            raise StageFailed(f"{self.stage} failed: " + "; ".join(failures))
        return path

    def fail(self, err: BaseException, partial: dict[str, Any] | None = None) -> None:
        """Record an error with whatever was measured before it, then re-raise."""
        data = dict(partial or {})
        data["error"] = f"{type(err).__name__}: {err}"
        data["traceback"] = traceback.format_exc()
        self.write_results(data, failures=[data["error"]])


def open_stage(stage: str, run_dir: str = "", params_path: str = "") -> StageContext:
    """Stage context for a notebook. With no run_dir (a researcher stepping through by hand), a fresh run
    directory is made for the study in params_path (default: the default study)."""
    if run_dir:
        layout = RunLayout(run_dir)
        study = load_study(params_path or layout.params)
        return StageContext(stage, run_dir, study)
    from studykit.evidence.rundir import new_run_dir

    study = load_study(params_path or DEFAULT_PARAMS)
    run = new_run_dir(study)
    write_text(RunLayout(run).params, dump_study(study))
    print(f"stepping by hand: new run directory {run}")
    return StageContext(stage, run, study)


def load_result(run_dir: str | Path, stage: str) -> dict | None:
    path = RunLayout(run_dir).result(stage)
    return read_json(path) if path.exists() else None
