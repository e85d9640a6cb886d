"""The seed's deploy gates: dummy weights start, real weights start, a smoke chat answers, /v1/models lists us."""

from __future__ import annotations

import json
import shlex
import time

from .server import ServerError, VllmServer, http_get, http_post_json
from .stage import StageContext


def curl_command(url: str, payload: dict) -> str:
    return (f"curl {url} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(payload, ensure_ascii=False))}")


def start_gate(ctx: StageContext, label: str, load_format: str | None = None) -> dict:
    """Start a server, time it to /health, stop it. A failure to start is a failed gate, not a crash."""
    server = ctx.server(label, load_format=load_format)
    gate = {"label": label, "load_format": load_format or ctx.study.model.load_format, "command": server.command,
            "log": str(server.log_path.relative_to(ctx.run_dir))}
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


def smoke_chat(ctx: StageContext, server: VllmServer, prompt: str, max_completion_tokens: int) -> dict:
    url = server.base_url + "/v1/chat/completions"
    payload = {"model": ctx.study.model.name_served, "messages": [{"role": "user", "content": prompt}],
               "temperature": 0, "max_completion_tokens": max_completion_tokens}
    curl = curl_command(url, payload)
    ctx.commands.note("smoke chat", curl)
    t0 = time.monotonic()
    answer = http_post_json(url, payload, timeout=300)
    seconds = round(time.monotonic() - t0, 3)
    choice = answer["choices"][0]
    return {"request": payload, "curl": curl, "reply": choice["message"].get("content") or "",
            "finish_reason": choice.get("finish_reason"), "usage": answer.get("usage"), "seconds": seconds}


def real_gate_with_chat(ctx: StageContext, prompt: str, max_completion_tokens: int) -> tuple[dict, dict, list]:
    server = ctx.server("real-gate")
    gate = {"label": "real-gate", "load_format": ctx.study.model.load_format, "command": server.command,
            "log": str(server.log_path.relative_to(ctx.run_dir))}
    try:
        with server:
            gate.update(passed=True, ready_seconds=server.ready_seconds)
            models = list_models(server)
            chat = smoke_chat(ctx, server, prompt, max_completion_tokens)
    except ServerError as err:
        gate.update(passed=False, ready_seconds=None, error=str(err))
        return gate, {}, []
    return gate, chat, models


def deploy_failures(study, dummy: dict | None, real: dict | None, chat: dict, models: list) -> list[str]:
    failures = []
    for gate in (dummy, real):
        if gate is not None and not gate.get("passed"):
            failures.append(f"{gate['label']} did not start: {gate.get('error', '').splitlines()[0]}")
    if real is not None and real.get("passed"):
        if not chat.get("reply", "").strip():
            failures.append("smoke chat returned no text")
        served = [m.get("id") for m in models]
        if study.model.name_served not in served:
            failures.append(f"/v1/models lists {served}, not {study.model.name_served!r}")
    return failures
