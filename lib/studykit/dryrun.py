"""`studykit run PARAMS --dry-run`: every command and environment variable the study would run, in order,
built by the same functions the stages use (studykit.engine), without starting, downloading or building anything.

The Ascend profile's dry run is how its commands are checked here, where no Ascend host is reachable:
tests compare it with the commands of the seed report.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import engine, weights
from .commands import display_command
from .params import STAGE_ORDER, Study, load_study

PORT_PLACEHOLDER = "PORT"  # server.port: auto picks a free port at run time


@dataclass
class Step:
    stage: str
    label: str
    kind: str  # command (runs to completion) | server (start, wait for /health, stop) | http | python | note
    command: str
    argv: list[str] = field(default_factory=list)


def model_dir_for(study: Study) -> Path:
    """Where the checkpoint will be, without building or downloading it."""
    m = study.model
    if m.source == "local":
        return Path(m.path)
    if m.source == "modelscope":
        from .modelscope_source import cache_dir_for

        return cache_dir_for(m.id, m.revision)
    if m.id == weights.DEFAULT_MODEL:
        return weights.cache_root() / "models" / f"{weights.DEFAULT_MODEL}-bfloat16"
    from .minicpm_tiny import NAME

    return weights.cache_root() / "models" / NAME


def _port(study: Study) -> int | str:
    return study.server.port if study.server.port != "auto" else PORT_PLACEHOLDER


def latency_bench_args(study: Study) -> list[str]:
    from .bench.latency import latency_args

    return latency_args(study.latency)


def throughput_bench_args(study: Study) -> list[str]:
    # --input-len/--output-len alone are overridden by the random dataset's defaults (the seed's command
    # fell into this): the lengths go to the random dataset itself (see studykit.bench.throughput).
    from .bench.throughput import throughput_args

    return throughput_args(study.throughput)


def serve_bench_argv(study: Study, model_dir: Path, base_url: str, rate: float, concurrency: int | None) -> list[str]:
    # The stage adds --save-result/--save-detailed/--result-dir/--percentile-metrics (its output files) to these.
    from .bench.serve import serve_bench_argv as argv

    return argv(study, model_dir, base_url, rate, concurrency)


def _server(stage: str, label: str, study: Study, model_dir: Path, **kw) -> Step:
    argv = engine.serve_argv(study, model_dir, _port(study), **kw)
    return Step(stage, label, "server", display_command(argv), argv)


def _cmd(stage: str, label: str, argv: list[str]) -> Step:
    return Step(stage, label, "command", display_command(argv), argv)


def _weights_steps(study: Study, model_dir: Path) -> list[Step]:
    m = study.model
    if m.source == "modelscope":
        from .modelscope_source import download_command

        cached = (model_dir / weights.MANIFEST).is_file()
        cmd = download_command(m.id, m.revision, model_dir)
        return [Step("weights", "modelscope download", "command", cmd + ("  # cached: reused if intact" if cached else ""),
                     shlex.split(cmd))]
    if m.source == "builtin":
        what = "build-default" if m.id == weights.DEFAULT_MODEL else "build-minicpm-tiny"
        return [Step("weights", f"build {m.id}", "command", f"studykit model {what}", ["studykit", "model", what])]
    return [Step("weights", "local checkpoint", "note", f"# local checkpoint {model_dir}")]


def stage_steps(study: Study, stage: str, model_dir: Path) -> list[Step]:
    host = study.server.host
    base_url = f"http://{host}:{_port(study)}"
    steps: list[Step] = []
    if stage == "deploy":
        from .deploy import curl_command

        p = study.deploy
        if p.dummy_gate:
            steps.append(_server(stage, "dummy-gate", study, model_dir, load_format="dummy"))
        if p.real_gate:
            steps.append(_server(stage, "real-gate", study, model_dir))
            steps.append(Step(stage, "list models", "http", f"curl {base_url}/v1/models"))
            payload = {"model": study.model.name_served, "messages": [{"role": "user", "content": p.smoke_prompt}],
                       "temperature": 0, "max_completion_tokens": p.max_completion_tokens}
            steps.append(Step(stage, "smoke chat", "http", curl_command(f"{base_url}/v1/chat/completions", payload)))
    elif stage == "latency":
        steps.append(_cmd(stage, "bench latency", engine.bench_argv(study, "latency", model_dir,
                                                                     latency_bench_args(study))))
        # the same shape with output_len 1: prefill time, and the steady decode time by difference
        from .bench.latency import latency_args

        steps.append(_cmd(stage, "bench latency (output_len 1)", engine.bench_argv(
            study, "latency", model_dir, latency_args(study.latency, output_len=1))))
    elif stage == "throughput":
        steps.append(_cmd(stage, "bench throughput", engine.bench_argv(study, "throughput", model_dir,
                                                                        throughput_bench_args(study))))
    elif stage == "serve":
        p = study.serve
        if p.base_url:
            base_url = p.base_url.rstrip("/")
        else:
            steps.append(_server(stage, "serve", study, model_dir))
        for rate in p.request_rates:
            for conc in (p.max_concurrency or [None]):
                for r in range(p.repeats):
                    label = f"bench serve rate={rate:g}" + (f" concurrency={conc}" if conc else "") + \
                            (f" repeat={r + 1}" if p.repeats > 1 else "")
                    steps.append(_cmd(stage, label, serve_bench_argv(study, model_dir, base_url, rate, conc)))
    elif stage == "accuracy":
        p = study.accuracy
        steps.append(_server(stage, "accuracy-serve", study, model_dir))
        steps.append(Step(stage, "vllm greedy", "http",
                          f"# POST {base_url}/v1/completions per prompt of {p.prompts_file}: temperature 0, "
                          f"max_tokens {p.max_new_tokens}, logprobs {p.top_k_logprobs}"))
        steps.append(Step(stage, "reference", "python",
                          f"# python: transformers AutoModelForCausalLM.from_pretrained({str(model_dir)!r}, "
                          f"dtype=torch.{p.reference_dtype}) on CPU, greedy, teacher-forced on vLLM's tokens"))
    elif stage == "functional":
        p = study.functional
        steps.append(_server(stage, "functional-serve", study, model_dir))
        steps.append(Step(stage, "prefix cache", "http",
                          f"# {p.prefix_requests} requests sharing a {p.prefix_tokens}-token prefix; "
                          f"GET {base_url}/metrics before/after (vllm:prefix_cache_hits_total)"))
        if p.graph_vs_eager:
            steps.append(_server(stage, "functional-eager", study, model_dir, enforce_eager=True))
    elif stage == "report":
        steps.append(Step(stage, "report", "python", "# python: report.{zh,en}.md and report.html from results/"))
    return steps


def plan(study: Study, stages: list[str] | None = None) -> tuple[dict[str, str], list[Step]]:
    """(environment of every vllm process, steps in run order)."""
    wanted = [s for s in STAGE_ORDER if s in (stages or study.stages)]
    model_dir = model_dir_for(study)
    steps = _weights_steps(study, model_dir)
    for stage in wanted:
        steps += stage_steps(study, stage, model_dir)
    return engine.platform_env(study), steps


def warnings_for(study: Study, model_dir: Path) -> list[str]:
    """What would stop the study early on this machine, found without starting anything."""
    from .preflight import PreflightError, check_checkpoint, check_platform

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
    warnings = warnings_for(study, model_dir_for(study))
    out.write(render(study, params_path, env, steps, warnings))
    return 1 if any(w.startswith("preflight:") for w in warnings) else 0
