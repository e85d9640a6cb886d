"""`studykit run PARAMS --dry-run`: every command and environment variable the study would run, in order,
built by each stage's own plan() as Steps (studykit.plan) — the same Steps the stage notebooks execute — without
starting, downloading or building anything.

The Ascend profile's dry run is how its commands are checked here, where no Ascend host is reachable:
tests compare it with the commands of the seed report, and with commands.jsonl of a real CPU run.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from studykit.engine import cmdline
from studykit.weights import files
from studykit.weights.store import Checkpoint, checkpoint
from studykit.params import Study, load_study
from studykit.stages import STAGE_ORDER
from studykit.stages import stage_plan
from studykit.plan import PORT_PLACEHOLDER, RUN_DIR_PLACEHOLDER, Step


def _port(study: Study) -> int | str:
    return study.server.port if study.server.port != "auto" else PORT_PLACEHOLDER


def _weights_step(checkpoint: Checkpoint) -> Step:
    if not checkpoint.argv:
        return Step("weights", checkpoint.label, "python", text=f"# {checkpoint.label} {checkpoint.model_dir}")
    cached = (checkpoint.model_dir / files.MANIFEST).is_file()
    return Step("weights", checkpoint.label, "command", checkpoint.argv,
                text=(shlex.join(checkpoint.argv) + "  # cached: reused if intact") if cached else "")


def plan(study: Study, stages: list[str] | None = None) -> tuple[dict[str, str], list[Step]]:
    """(environment of every vllm process, steps in run order): each stage's own plan()."""
    from studykit.engine.shared import server_key
    from studykit.runner.sharing import execution_order, server_users

    wanted = [s for s in STAGE_ORDER if s in (stages or study.stages)]
    weights = checkpoint(study)
    model_dir = weights.model_dir
    shared = server_users(study, wanted, model_dir)
    steps = [_weights_step(weights)]
    if study.ray is not None:
        from studykit.engine.ray_cluster import cluster_steps

        steps += cluster_steps(study)
    started: dict[str, Step] = {}
    for stage in execution_order(study, wanted, model_dir):
        for step in stage_plan(study, stage, model_dir, RUN_DIR_PLACEHOLDER, _port(study)):
            key = server_key(step.argv) if step.kind == "server" else None
            if key in started:
                first = started[key]
                step = Step(stage, step.label, "shared", text=f"# {step.label}: the server {first.stage}/{first.label} "
                                                              "started is still up: this stage uses it")
            elif key in shared:
                started[key] = step
                users = ", ".join(dict.fromkeys(s for s, _ in shared[key]))
                step.text = f"{step.command}\n# shared by {users}; stopped after the last of them"
            steps.append(step)
    return cmdline.platform_env(study), steps


def warnings_for(study: Study, model_dir: Path) -> list[str]:
    """What would stop the study early on this machine, found without starting anything."""
    from studykit.engine.preflight import PreflightError, check_checkpoint, check_platform

    out = []
    try:
        check_platform(study)
    except PreflightError as err:
        # Not fatal for a dry run: printing the Ascend commands on another machine is the point of it.
        out.append(f"not on this machine: {err}")
    if (model_dir / "config.json").is_file():
        try:
            check_checkpoint(study, model_dir)
        except PreflightError as err:
            out.append(f"preflight: {err}")
    return out


def render(study: Study, params_path: str | Path, env: dict[str, str], steps: list[Step], warnings: list[str]) -> str:
    lines = [f"# studykit dry run: study {study.name} ({params_path}), platform {study.platform}",
             "# nothing below was started; these are the commands `studykit run` runs, in order", ""]
    lines.append("## environment of every vllm process (the kit sets these; shown as exports)")
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    if any(PORT_PLACEHOLDER in s.command for s in steps):
        lines.append(f"# {PORT_PLACEHOLDER}: server.port is auto, a free port is chosen when the server starts")
    lines.append(f"# {RUN_DIR_PLACEHOLDER}: the run directory, outputs/<study>/<UTC time>/")
    current = None
    for s in steps:
        if s.stage != current:
            current = s.stage
            lines += ["", f"## {current}"]
        if s.kind == "server":
            lines.append(f"# {s.label}: start, wait for GET /health, then stop")
        elif not s.command.startswith("#"):
            lines.append(f"# {s.label}")
        lines.append(s.command)
    for w in warnings:
        lines.append(f"\n# WARNING {w}")
    return "\n".join(lines) + "\n"


def dry_run(params_path: str | Path, stages: list[str] | None = None, out=None) -> int:
    """Print the plan. 0: printed; 1: printed, but a preflight check says the study would stop early."""
    out = out or sys.stdout
    study = load_study(params_path)  # ParamsError -> exit 2 in the CLI
    env, steps = plan(study, stages)
    warnings = warnings_for(study, checkpoint(study).model_dir)
    out.write(render(study, params_path, env, steps, warnings))
    return 1 if any(w.startswith("preflight:") for w in warnings) else 0
