"""What a stage notebook holds on to: the run directory, the study, the command journal, the model.

Notebooks call `open_stage(...)` in their first cell after the parameters and use the context for
everything that touches the outside world, so each cell stays a thin call.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from . import engine, weights
from .commands import CommandLog, CommandRecord, utc_now
from .params import Study, dump_study, load_study
from .results import RunLayout, read_json, write_json, write_text
from .server import VllmServer, resolve_port

DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "params" / "smollm2-135m-cpu.yaml"


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

    @property
    def model_dir(self) -> Path:
        """The checkpoint on disk, built or downloaded on first use and checked against its manifest."""
        if self._model_dir is None:
            from .preflight import check_model

            path = weights.resolve(self.study, self.commands)
            check_model(self.study, path)  # e.g. auto_map without trust_remote_code: stop before vLLM starts
            self._model_dir = path
        return self._model_dir

    @property
    def raw_dir(self) -> Path:
        return self.layout.raw_dir(self.stage)

    def env(self) -> dict[str, str]:
        return engine.platform_env(self.study)

    def server(self, label: str = "serve", *, load_format: str | None = None,
               enforce_eager: bool | None = None, extra: list[str] | tuple = ()) -> VllmServer:
        """A `vllm serve` for this study; use as `with ctx.server() as srv:`."""
        port = resolve_port(self.study.server.host, self.study.server.port)
        argv = engine.serve_argv(self.study, self.model_dir, port, load_format=load_format,
                                 enforce_eager=enforce_eager, extra=extra)
        return VllmServer(argv, host=self.study.server.host, port=port, env_extra=self.env(),
                          log_path=self.layout.logs / f"{self.stage}-{label}.log", commands=self.commands,
                          label=label, ready_timeout_s=self.study.server.ready_timeout_s,
                          pid_dir=self.layout.pids)

    def run_vllm(self, argv: list[str], label: str, timeout: float | None = None) -> CommandRecord:
        return self.commands.run(argv, label=label, env_extra=self.env(),
                                 log_path=self.raw_dir / f"{label}.log", timeout=timeout)

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
        return str(path)

    def write_results(self, data: dict[str, Any], failures: list[str] | None = None) -> Path:
        """Write results/<stage>.json; then raise StageFailed if anything failed, after the file is safe."""
        failures = list(failures or [])
        doc = {"stage": self.stage, "study": self.study.name, "status": "failed" if failures else "passed",
               "failures": failures, "started_utc": self.started_utc, "ended_utc": utc_now(),
               "wall_seconds": round(time.monotonic() - self._t0, 3), **data}
        path = write_json(self.layout.result(self.stage), doc)
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
    from .runner import new_run_dir

    study = load_study(params_path or DEFAULT_PARAMS)
    run = new_run_dir(study)
    write_text(RunLayout(run).params, dump_study(study))
    print(f"stepping by hand: new run directory {run}")
    return StageContext(stage, run, study)


def load_result(run_dir: str | Path, stage: str) -> dict | None:
    path = RunLayout(run_dir).result(stage)
    return read_json(path) if path.exists() else None
