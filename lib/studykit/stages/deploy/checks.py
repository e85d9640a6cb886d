"""The deploy stage's checks: each gate the params ask for got to ready (the real one also answered its first
requests), each gate's command loads the weights the gate claims (extra_args can override --load-format), the
smoke request is the one the params describe, its reply has text within max_completion_tokens, and /v1/models
lists the served name. A failed gate fails the stage through its check; what depends on the real gate is
not_run when that gate did not pass."""

from __future__ import annotations

import shlex

from studykit.checks import check, not_run
from studykit.schema.base import Check
from studykit.stages.deploy.params import DeployParams
from studykit.stages.deploy.result import DeployResult, Gate

GATES = (("dummy_gate", "dummy-weight gate gets to ready"),
         ("real_gate", "real-weight gate gets to ready and answers its first requests"))


def _gate(key: str, name: str, asked: bool, gate: Gate | None) -> Check:
    cid, metric = f"deploy.{key}", f"deploy.{key}_ready_s"
    if not asked:
        return not_run(cid, name, f"{key} is false in the study", metric)
    if gate is None:
        return check(cid, name, False, f"{key} was asked for but the result records no gate", "ready", None, metric)
    if gate.passed:
        ready = f"{gate.ready_seconds:.1f} s" if gate.ready_seconds is not None else "a time not measured"
        return check(cid, name, True, f"{gate.label} ready in {ready}", "ready", gate.ready_seconds, metric)
    lines = (gate.error or "").splitlines() or [""]
    cause = next((line for line in lines if line.startswith("root cause")), None)
    what = "failed" if gate.ready_seconds else "did not start"
    return check(cid, name, False, f"{gate.label} {what}: {lines[0]}" + (f"; {cause}" if cause else ""),
                 "ready", gate.ready_seconds, metric)


def _load_format(gate: Gate) -> Check:
    """vLLM keeps the last --load-format of its command line; none means vLLM's default, auto."""
    argv = shlex.split(gate.command)
    flags = [i for i, a in enumerate(argv) if a == "--load-format"]
    if not flags:
        got = "auto"
    else:
        got = argv[flags[-1] + 1] if flags[-1] + 1 < len(argv) else None
    return check("deploy.gate_load_format", f"{gate.label}: command loads {gate.load_format} weights",
                 got == gate.load_format, f"the command's --load-format is {got}", gate.load_format, got,
                 subject=gate.label)


def _real_gate_missing(p: DeployParams, result: DeployResult) -> str | None:
    if not p.real_gate:
        return "real_gate is false in the study (the chat and the model list run on the real-weight server)"
    if result.real_gate is None or not result.real_gate.passed:
        return "the real-weight gate did not pass (deploy.real_gate says why)"
    return None


def _smoke(p: DeployParams, result: DeployResult, reason: str | None) -> list[Check]:
    names = {"deploy.smoke_request_matches_params": "smoke request = smoke_prompt, max_completion_tokens, served name",
             "deploy.smoke_chat": "smoke chat replies with text",
             "deploy.smoke_chat_within_max_tokens": "smoke chat completion tokens <= max_completion_tokens"}
    chat = result.smoke_chat
    if reason is not None:
        return [not_run(cid, name, reason) for cid, name in names.items()]
    if chat is None:
        return [check(cid, name, False, "the real-weight gate passed but the result records no smoke chat")
                for cid, name in names.items()]
    req = chat.request
    messages = req.get("messages") or [{}]
    sent = {"content": messages[-1].get("content"), "max_completion_tokens": req.get("max_completion_tokens"),
            "model": req.get("model")}
    want = {"content": p.smoke_prompt, "max_completion_tokens": p.max_completion_tokens,
            "model": result.served_model_name}
    wrong = {k: sent[k] for k in want if sent[k] != want[k]}
    out = [check("deploy.smoke_request_matches_params", names["deploy.smoke_request_matches_params"], not wrong,
                 "as requested" if not wrong else f"differs: {wrong}", want, sent)]
    reply = chat.reply.strip()
    out.append(check("deploy.smoke_chat", names["deploy.smoke_chat"], bool(reply),
                     f"reply {reply[:80]!r}, finish_reason {chat.finish_reason}" if reply else "the reply is empty",
                     "non-empty reply", reply[:80]))
    tokens = (chat.usage or {}).get("completion_tokens")
    if tokens is None:
        out.append(not_run("deploy.smoke_chat_within_max_tokens", names["deploy.smoke_chat_within_max_tokens"],
                           "the reply carries no usage.completion_tokens"))
    else:
        out.append(check("deploy.smoke_chat_within_max_tokens", names["deploy.smoke_chat_within_max_tokens"],
                         tokens <= p.max_completion_tokens,
                         f"usage.completion_tokens {tokens}, max_completion_tokens {p.max_completion_tokens}",
                         f"<= {p.max_completion_tokens}", tokens))
    return out


def checks(p: DeployParams, result: DeployResult) -> list[Check]:
    out = [_gate(key, name, getattr(p, key), getattr(result, key)) for key, name in GATES]
    out += [_load_format(g) for g in (result.dummy_gate, result.real_gate) if g is not None]
    reason = _real_gate_missing(p, result)
    out += _smoke(p, result, reason)
    name = "/v1/models lists the served model name"
    ids = [m.get("id") for m in result.models]
    if reason is not None:
        out.append(not_run("deploy.models_lists_served_name", name, reason))
    elif result.served_model_name is None:
        out.append(not_run("deploy.models_lists_served_name", name, "the result records no served model name"))
    else:
        out.append(check("deploy.models_lists_served_name", name, result.served_model_name in ids,
                         f"/v1/models lists {ids}", result.served_model_name, ids))
    return out
