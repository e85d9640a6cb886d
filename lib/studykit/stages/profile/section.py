"""The profile stage's part of the report (§5.5, why this speed: the host/device split per decode step, the top
operators, the profiler's overhead, energy per token) and its row of the summary."""

from __future__ import annotations

import re

from studykit.report.blocks import Ctx, SummaryRow, energy_table, show_charts, stage_banner, stage_vllm_commands
from studykit.report.check_text import check_detail, check_label
from studykit.report.mdtools import DASH, fmt, inline_code
from studykit.stages.profile.result import ProfileResult, ProfileWindow
from studykit.stages.profile.trace import FORWARD_SCOPE

SUMMARY = (SummaryRow("sum_profile", ("profile.outside_share", "profile.mean_in_model_ms",
                                      "profile.mean_outside_model_ms", "profile.overhead")),)

TEXT = {
    "title": {"zh": "为什么是这个速度:Decode 单步的主机 / 设备拆分 (profile)",
              "en": "Why this speed: host / device split of a decode step (profile)"},
    "method": {"zh": "vLLM 自带的 torch profiler(--profiler-config,/start_profile 与 /stop_profile)记录一段稳定 Decode:"
                     "每个引擎步从其 execute_model 标注开始到下一步开始为一个周期;模型前向内 = {basis};其余(调度、采样、"
                     "Python、输入准备、等待)为模型前向外。每个并发先跑一个预热窗口,再按“关 开 开 关”的顺序交替测量"
                     "未开启与开启 profiler 的同一窗口(各 {repeats} 次):两类窗口平均单 token 时延之比即 profiler 开销,"
                     "未开启窗口之间的离散度说明主机本身的波动。拆分取第一个开启 profiler 的窗口的 trace。"
                     "在 CPU 上“设备”指前向内的算子时间。",
               "en": "vLLM's own torch profiler (--profiler-config, /start_profile and /stop_profile) records a window "
                     "of steady decode: a step's period runs from its execute_model annotation to the next step's; "
                     "inside the model = {basis}; the rest (scheduler, sampler, Python, input prep, waiting) is "
                     "outside it. Each concurrency runs a warm-up window, then the same window without and with the "
                     "profiler in the order off on on off ({repeats} of each): the ratio of the two kinds' mean time "
                     "per token is the profiler's overhead, and the spread of the unprofiled windows is what the host "
                     "alone moves. The split is the first profiled window's trace. On CPU \"device\" means the "
                     "operator time inside the forward."},
    "col_window": {"zh": "并发", "en": "Concurrency"},
    "col_plain": {"zh": "单 token 时延,未开 profiler (ms)", "en": "ms/token, profiler off"},
    "col_profiled": {"zh": "单 token 时延,开启 profiler (ms)", "en": "ms/token, profiler on"},
    "col_overhead": {"zh": "profiler 开销", "en": "Profiler overhead"},
    "col_spread": {"zh": "未开窗口离散度", "en": "Spread, profiler off"},
    "from": {"zh": "并发 {c} 的来源:{where}", "en": "Concurrency {c} comes from {where}"},
    "col_steps": {"zh": "Decode 步数", "en": "Decode steps"},
    "col_period": {"zh": "单步周期 (ms)", "en": "Step period (ms)"},
    "col_in": {"zh": "模型前向内 (ms)", "en": "In the model (ms)"},
    "col_out": {"zh": "模型前向外 (ms)", "en": "Outside it (ms)"},
    "col_idle": {"zh": "无算子运行 (ms)", "en": "No operator running (ms)"},
    "col_share": {"zh": "前向外占比", "en": "Share outside"},
    "col_verdict": {"zh": "判定", "en": "Verdict"},
    "host-bound": {"zh": "主机侧受限 (host-bound)", "en": "host-bound"},
    "device-bound": {"zh": "设备侧受限 (device-bound)", "en": "device-bound"},
    "verdict": {"zh": "并发 {c}:{verdict},Decode 单步中 {share} 在模型前向之外(阈值 {threshold})。",
                "en": "Concurrency {c}: {verdict}, {share} of a decode step outside the model's forward "
                      "(threshold {threshold})."},
    "no_split": {"zh": "并发 {c}:没有拆分结果:{why}", "en": "Concurrency {c}: no split: {why}"},
    "top_ops": {"zh": "并发 {c}:自耗时最多的算子({scope})", "en": "Concurrency {c}: operators by self time ({scope})"},
    "col_op": {"zh": "算子", "en": "Operator"},
    "col_calls": {"zh": "调用次数", "en": "Calls"},
    "col_self": {"zh": "自耗时 (ms)", "en": "Self time (ms)"},
    "col_op_share": {"zh": "占比", "en": "Share"},
    "basis_forward": {"zh": "vLLM 标注的 'gpu_model_runner: forward' 作用域的时长(VLLM_CUSTOM_SCOPES_FOR_PROFILING=1)",
                      "en": "the length of vLLM's 'gpu_model_runner: forward' scope (VLLM_CUSTOM_SCOPES_FOR_PROFILING=1)"},
    "basis_ops": {"zh": "该步 execute_model 标注内的算子时间(算子区间的并集;trace 中没有 forward 作用域)",
                  "en": "the operator time inside the step's execute_model annotation (union of operator intervals; "
                        "the trace has no forward scope)"},
    "basis_npu": {"zh": "设备的 Computing + 未被掩盖的通信时间(step_trace_time.csv)",
                  "en": "the device's Computing + not-overlapped Communication (step_trace_time.csv)"},
    "scope_cpu": {"zh": "cpu_op 自耗时,从第一步开始到最后一步的标注结束", "en": "cpu_op self time from the first step's "
                                                                         "start to the end of the last step's annotation"},
    "scope_npu": {"zh": "op_statistic.csv:各算子类型的设备耗时", "en": "op_statistic.csv: device time per operator type"},
}


def _t(ctx: Ctx, key: str, **kw) -> str:
    text = TEXT[key][ctx.lang]
    return text.format(**kw) if kw else text


# where a window's concurrency came from (stage.saturated_batch writes it in English), for the zh report
FROM_ZH = ((re.compile(r"serve's saturated point \(rate inf\): max_concurrent_requests (\d+) in ([^\s,]+)"),
            r"serve 饱和点(速率 inf)同时在途的请求数 \1(\2)"),
           (re.compile(r"serve\.num_prompts (\d+) \(serve's saturated point sends them all at once; serve has not run\)"),
            r"serve.num_prompts \1(serve 饱和点一次发出全部请求;本次 serve 尚未运行)"),
           (re.compile(r", capped at model\.max_num_seqs (\d+)"), r",以 model.max_num_seqs \1 为上限"))


def _from(ctx: Ctx, where: str) -> str:
    if ctx.lang == "zh":
        for rx, zh in FROM_ZH:
            where = rx.sub(zh, where)
    return where


def _pct(x: float | None) -> str:
    return DASH if x is None else f"{x * 100:.1f} %"


def split_table(ctx: Ctx, windows: list[ProfileWindow]) -> None:
    rows = []
    for w in windows:
        sp = w.split
        rows.append([str(w.concurrency), fmt(w.ms_per_output_token_off), fmt(w.ms_per_output_token_on),
                     _pct(w.overhead), _pct(w.spread_off),
                     fmt(sp.decode_steps if sp else None), fmt(sp.mean_period_ms if sp else None),
                     fmt(sp.mean_in_model_ms if sp else None), fmt(sp.mean_outside_model_ms if sp else None),
                     fmt(sp.mean_idle_ms if sp else None), _pct(sp.outside_share if sp else None),
                     _t(ctx, w.verdict) if w.verdict else DASH])
    ctx.md.table([_t(ctx, k) for k in ("col_window", "col_plain", "col_profiled", "col_overhead", "col_spread",
                                       "col_steps",
                                       "col_period", "col_in", "col_out", "col_idle", "col_share", "col_verdict")],
                 rows)


def verdicts(ctx: Ctx, res: ProfileResult) -> None:
    threshold = _pct(res.params.get("outside_share_threshold"))
    for w in res.windows:
        if w.split is not None and w.verdict:
            ctx.md.p(_t(ctx, "verdict", c=w.concurrency, verdict=_t(ctx, w.verdict),
                        share=_pct(w.split.outside_share), threshold=threshold))
        else:
            ctx.md.p(_t(ctx, "no_split", c=w.concurrency, why=w.split_error or DASH))


def top_ops(ctx: Ctx, w: ProfileWindow) -> None:
    sp = w.split
    if sp is None or not sp.top_ops:
        return
    scope = _t(ctx, "scope_cpu" if sp.source == "torch_cpu_trace" else "scope_npu")
    ctx.md.p(_t(ctx, "top_ops", c=w.concurrency, scope=scope))
    ctx.md.table([_t(ctx, k) for k in ("col_op", "col_calls", "col_self", "col_op_share")],
                 [[inline_code(op.name), fmt(op.calls), fmt(op.self_ms), _pct(op.share)] for op in sp.top_ops])


def _basis(ctx: Ctx, res: ProfileResult) -> str:
    """How "inside the model" was measured, in the reader's language (the parser records it in English)."""
    sp = next((w.split for w in res.windows if w.split is not None), None)
    if sp is None:
        return DASH
    if sp.source == "torch_npu_profiler":
        return _t(ctx, "basis_npu")
    return _t(ctx, "basis_forward" if sp.in_model_basis.startswith(f"the '{FORWARD_SCOPE}'") else "basis_ops")


def why(ctx: Ctx) -> None:
    """§5.5's part from the profile stage; nothing when the study did not ask for it (the stage is opt-in)."""
    md, st = ctx.md, ctx.run.stages["profile"]
    if not (st.requested or st.ran):
        return
    md.h(4, _t(ctx, "title"))
    cmds = stage_vllm_commands(ctx, "profile")
    if cmds:
        md.code("\n".join(cmds))
    if not stage_banner(ctx, "profile"):
        return
    res: ProfileResult = st.result
    md.p(_t(ctx, "method", basis=_basis(ctx, res), repeats=res.params.get("repeats", DASH)))
    if res.windows:
        split_table(ctx, res.windows)
        ctx.md.bullets([_t(ctx, "from", c=w.concurrency, where=_from(ctx, w.concurrency_from)) for w in res.windows
                        if w.concurrency_from != "params"])
        verdicts(ctx, res)
        for w in res.windows:
            top_ops(ctx, w)
        energy_table(ctx, "profile", res)  # the first unprofiled window of each concurrency
    failed = [c for c in res.checks if c.status == "failed"]
    if failed:
        md.bullets([f"{check_label(c, ctx.lang)}: {check_detail(c, ctx.lang)}" for c in failed])
    show_charts(ctx, "profile")


SECTIONS = {"why": why}
