"""The deploy stage's parts of the report (SECTIONS, by id) and its rows of the summary (SUMMARY)."""

from __future__ import annotations

from studykit.report.blocks import Ctx, SummaryRow, check_status, stage_banner, value_cell
from studykit.report.mdtools import DASH, fmt
from studykit.schema.metrics import dig

SUMMARY = (SummaryRow("sum_deploy", ("deploy.dummy_gate_ready_s", "deploy.real_gate_ready_s")),)


def quickstart(ctx: Ctx) -> None:
    """4.1 the serve command as it ran; 4.2 功能验证 (the seed's smoke): the request, the reply, and the start and
    answer verification table."""
    md, run = ctx.md, ctx.run
    md.h(2, ctx.t("s4"))
    has = stage_banner(ctx, "deploy")
    st = run.stages["deploy"]
    md.h(3, ctx.t("s4_1"))
    serve = run.command("deploy", "real-gate")
    if serve and serve.get("command"):
        md.p(ctx.t("q_serve"))
        md.code(serve["command"])
    elif st.ran:
        md.p(ctx.t("q_no_serve"))
    md.h(3, ctx.t("s4_2"))
    chat_cmd = run.command("deploy", "smoke chat")
    chat = st.result.smoke_chat if st.result is not None else None
    if not chat_cmd and not chat and st.ran:
        md.p(ctx.t("q_no_chat"))
    if chat_cmd:
        md.p(ctx.t("q_request"))
        md.code(chat_cmd["command"])
    if chat:
        md.p(ctx.t("q_reply"))
        md.quote(chat.reply)
        md.p(ctx.t("q_usage", finish=chat.finish_reason or DASH, p=fmt(dig(chat.usage, "prompt_tokens")),
                   c=fmt(dig(chat.usage, "completion_tokens")), s=fmt(chat.seconds)))
    if has:
        gates(ctx)


def gates(ctx: Ctx) -> None:
    """The seed's verification rows (dummy-weight start, real-weight start, chat completions, /v1/models), from
    deploy.json; a failing check on a start's ready time is named after it."""
    res = ctx.run.stages["deploy"].result
    if res is None:
        return
    rows = []
    for gate, label in ((res.dummy_gate, "q_gate_dummy"), (res.real_gate, "q_gate_real")):
        if gate is not None:
            key = "dummy_gate" if gate is res.dummy_gate else "real_gate"
            detail = ctx.t("g_ready", s=value_cell(ctx, f"deploy.{key}_ready_s", gate.ready_seconds)) \
                if gate.passed else (gate.error or DASH).splitlines()[0][:300]
            rows.append([ctx.t(label), check_status(ctx, gate.passed), detail])
    chat = res.smoke_chat
    if chat is not None:
        rows.append(["Chat Completions", check_status(ctx, bool(chat.reply.strip())),
                     ctx.t("g_chat", n=fmt(dig(chat.usage, "completion_tokens")))])
    if res.models:
        served = ctx.run.params("model").get("served_model_name") or ctx.run.params("model").get("id")
        ids = [m.get("id") for m in res.models]
        rows.append(["/v1/models", check_status(ctx, served in ids), ", ".join(map(str, ids)) or DASH])
    ctx.md.table([ctx.t("col_check"), ctx.t("col_status"), ctx.t("col_detail")], rows)


SECTIONS = {"quickstart": quickstart}
