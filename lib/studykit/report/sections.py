"""The report's sections, in the seed's order, each written from the run's files only.

A section never computes a measurement: numbers are looked up in results/<stage>.json (by their vLLM names),
commands in commands.jsonl. What is missing prints "—"; a stage that failed or did not run says so with its
error, and whatever it wrote before failing is still shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from studykit.schema.metrics import by_id, stage_metrics, value_of
from studykit.report.blocks import (Ctx, check_status, flatten, metric_label, metrics_table, params_table, point_label,
                     serve_points_table, show_charts, stage_banner, stage_vllm_commands, status_text, value_cell)
from studykit.report.mdtools import DASH, fmt, fmt_bytes, inline_code
from studykit.report.model import MEASURING_STAGES, Run, dig, is_number


def _stat_text(stat: dict | None) -> str:
    if not stat:
        return DASH
    text = fmt(stat.get("mean"))
    return text + (f" ± {fmt(stat['ci95_half_width'])}" if stat.get("ci95_half_width") is not None else "")


def _figures(ctx: Ctx, ids: list[str]) -> str:
    """'label value unit' for metric ids, from the results (serve: mean ± 95 % CI over repeats)."""
    parts = []
    for mid in ids:
        m = by_id()[mid]
        result = ctx.run.stages[m.stage].result
        if m.stage == "serve" and ".metrics." in m.path:
            stat = dig(result, m.path.rsplit(".", 1)[0])
            text = _stat_text(stat)
        else:
            v = value_of(m, result)
            text = fmt(v)
        if text != DASH:
            parts.append(f"{metric_label(m, ctx.lang)} {text} {m.unit}".rstrip())
    return "; ".join(parts) or DASH


def _task_figures(ctx: Ctx) -> str:
    """Per task: both scores, the paired difference and McNemar's p."""
    parts = []
    for t in (ctx.run.stages["tasks"].result or {}).get("tasks") or []:
        parts.append(ctx.t("sum_task", task=t["task"], ref=fmt(t["reference"]["score"]),
                           vllm=fmt(t["candidate"]["score"]), delta=fmt(t["delta"]["value"]),
                           p=fmt(t["mcnemar_exact_p"])))
    return "; ".join(parts) or DASH


def _check_counts(ctx: Ctx, checks: list[dict]) -> str:
    n = {k: sum(1 for c in checks if c.get("status") == k) for k in ("passed", "failed", "not_run")}
    return ctx.t("sum_checks", **n) if checks else DASH


def _like_for_like(ctx: Ctx, stage: str) -> str:
    """Whether this stage's shape matches the reference's (its params vs the reference's config)."""
    if not ctx.ref:
        return ""
    theirs = ctx.ref.stage_config(stage)
    if not theirs:
        return ctx.t("sum_ref_unknown")
    ours = ctx.run.params(stage)
    differ = []
    for k, v in theirs.items():
        if isinstance(v, (dict, list)):
            continue
        if k not in ours and isinstance(ours.get(f"{k}s"), list):  # one reference rate among the study's rates
            mine = ours[f"{k}s"]
            if v not in mine:
                shown = ["inf" if x in ("Infinity", float("inf")) else fmt(x) for x in mine]
                differ.append(f"{k}s {', '.join(shown)} ∌ {fmt(v)}")
        elif ours.get(k) != v:
            differ.append(f"{k} {fmt(ours.get(k))} ≠ {fmt(v)}")
    if ctx.run.study.get("platform") and ctx.ref.platform and ctx.run.study.get("platform") != ctx.ref.platform:
        differ.insert(0, f"platform {ctx.run.study.get('platform')} ≠ {ctx.ref.platform}")
    return ctx.t("sum_like") if not differ else ctx.t("sum_unlike", what=", ".join(differ))


SUMMARY_ROWS = (
    # (row key, stage, headline metric ids, check filter: None = all of the stage, else a name fragment)
    ("sum_deploy", "deploy", ["deploy.dummy_gate_ready_s", "deploy.real_gate_ready_s"], None),
    ("sum_latency", "latency", ["latency.avg_latency", "latency.decode_ms_per_token"], None),
    ("sum_throughput", "throughput", ["throughput.requests_per_second", "throughput.output_tokens_per_s"], None),
    ("sum_serve", "serve", ["serve.request_throughput", "serve.mean_ttft_ms", "serve.mean_tpot_ms"], None),
    ("sum_accuracy", "accuracy", ["accuracy.token_agreement_excluding_near_ties", "accuracy.real_divergences",
                                  "accuracy.near_ties", "accuracy.top1_agreement", "accuracy.mean_kl"], None),
    ("sum_tasks", "tasks", [], None),
    ("sum_prefix", "functional", ["functional.prefix_cache_hit_rate"], "prefix cache"),
    ("sum_chunked", "functional", ["functional.chunked_prefill_prompt_tokens"], "max_num_batched_tokens"),
    ("sum_graph", "functional", [], "graph and eager"),
)


def s0_summary(ctx: Ctx) -> None:
    """The verdict first: one row per stage or claim of the seed, its status, headline figures and checks."""
    md, run = ctx.md, ctx.run
    md.h(2, ctx.t("s0"))
    headers = [ctx.t("col_claim"), ctx.t("col_status"), ctx.t("col_headline"), ctx.t("col_checks")]
    if ctx.ref:
        headers.append(ctx.t("col_like"))
    rows = []
    for key, stage, ids, fragment in SUMMARY_ROWS:
        st = run.stages[stage]
        if not (st.requested or st.ran):
            continue
        checks = [c for c in st.checks if fragment is None or fragment in str(c.get("name"))]
        if fragment is not None and checks:
            status = check_status(ctx, checks[0].get("status"))
            if checks[0].get("status") == "not_run":
                figures = checks[0].get("detail") or DASH
            else:
                figures = _figures(ctx, ids) if ids else (checks[0].get("detail") or DASH)
        else:
            status = status_text(ctx, st.status)
            figures = _task_figures(ctx) if stage == "tasks" else _figures(ctx, ids)
        row = [ctx.t(key), status, figures, _check_counts(ctx, checks)]
        if ctx.ref:
            row.append(_like_for_like(ctx, stage) if stage in ("latency", "throughput", "serve") else "")
        rows.append(row)
    md.table(headers, rows)
    if any(by_id()[i].source == "derived" for _, _, ids, _ in SUMMARY_ROWS for i in ids):
        md.p(f"† {ctx.t('derived_note')} {by_id()['throughput.output_tokens_per_s'].how}; "
             f"{by_id()['latency.decode_ms_per_token'].how}")
    from studykit.report.notebook_html import notebook_links

    links = notebook_links(run.root)
    if links:
        md.p(ctx.t("sum_notebooks") + " " + " · ".join(
            f"{stage} ([{ctx.t('nb_reader')}]({reader}), [{ctx.t('nb_full')}]({full}))" for stage, reader, full in links))


def s1_model(ctx: Ctx) -> None:
    md, m = ctx.md, ctx.model
    md.h(2, ctx.t("s1"))
    if not m.get("model_dir"):
        md.p(ctx.t("m_no_dir"))
        return
    if not m.get("found"):
        md.p(ctx.t("m_not_found", dir=inline_code(m["model_dir"])))
        return
    study_model = ctx.run.params("model")
    params_n = m.get("parameters")
    params_s = f"{params_n:,} ({params_n / 1e9:.2f} B)" if is_number(params_n) else DASH
    heads = ctx.t("m_heads", heads=fmt(m.get("num_attention_heads")), kv=fmt(m.get("num_key_value_heads")))
    files = m.get("files") or []
    weight_files = [f for f in files if str(f.get("file", "")).endswith((".safetensors", ".bin", ".gguf", ".pt"))]
    fmt_names = sorted({Path(f["file"]).suffix.lstrip(".") for f in weight_files})
    weights_s = f"{', '.join(fmt_names) or DASH} ({len(weight_files)}, {fmt_bytes(sum(f.get('bytes') or 0 for f in weight_files))})" \
        if weight_files else DASH
    rows = [
        [ctx.t("m_architecture"), f"{', '.join(m.get('architectures') or []) or DASH} ({m.get('model_type') or DASH})"],
        [ctx.t("m_attention"), f"{m.get('attention') or DASH}, {heads}"],
        [ctx.t("m_layers"), fmt(m.get("num_hidden_layers"))],
        [ctx.t("m_hidden"), fmt(m.get("hidden_size"))],
        [ctx.t("m_parameters"), params_s],
        [ctx.t("m_context"), fmt(m.get("max_position_embeddings"))],
        [ctx.t("m_served_len"), fmt(study_model.get("max_model_len"))],
        [ctx.t("m_rope"), f"{m.get('rope_type') or DASH}" + (f" (rope_theta {fmt(m.get('rope_theta'))})" if m.get("rope_theta") else "")],
        [ctx.t("m_act"), m.get("hidden_act") or DASH],
        [ctx.t("m_vocab"), fmt(m.get("vocab_size"))],
        [ctx.t("m_dtype"), f"{m.get('config_dtype') or DASH} / {study_model.get('dtype') or DASH}"],
        [ctx.t("m_weights"), weights_s],
        [ctx.t("m_total_size"), fmt_bytes(m.get("total_bytes"))],
        [ctx.t("m_source"), source_text(ctx)],
        [ctx.t("m_dir"), inline_code(m["model_dir"])],
    ]
    md.table([ctx.t("col_item"), ctx.t("col_spec")], rows)
    if files:
        md.p(ctx.t("m_files"))
        md.table([ctx.t("col_file"), ctx.t("col_bytes"), "sha256"],
                 [[f.get("file"), f.get("bytes"), inline_code(str(f.get("sha256") or DASH))] for f in files])


def source_text(ctx: Ctx) -> str:
    study_model = ctx.run.params("model")
    src = (ctx.model.get("source") or {})
    kind = study_model.get("source") or src.get("source")
    if kind == "builtin":
        return ctx.t("src_builtin", id=study_model.get("id") or src.get("id") or DASH,
                     built_from=Path(str(src.get("built_from") or DASH)).name,
                     sha=(src.get("built_from_sha256") or DASH)[:16])
    if kind == "modelscope":
        return ctx.t("src_modelscope", id=study_model.get("id") or DASH,
                     revision=study_model.get("revision") or src.get("revision") or DASH)
    if kind == "local":
        return ctx.t("src_local", path=study_model.get("path") or DASH)
    return kind or DASH


def s2_environment(ctx: Ctx) -> None:
    md, env = ctx.md, ctx.run.environment
    md.h(2, ctx.t("s2"))
    if not env:
        md.p(ctx.t("e_missing"))
        return
    hw = env.get("hardware") or {}
    md.h(3, ctx.t("s2_1"))
    rows = [[ctx.t("e_cpu"), hw.get("cpu_model") or DASH],
            [ctx.t("e_cores"), f"{fmt(hw.get('logical_cores'))} / {fmt(hw.get('physical_cores'))}"],
            [ctx.t("e_flags"), ", ".join(hw.get("cpu_flags") or []) or DASH],
            [ctx.t("e_memory"), fmt_bytes(hw.get("memory_total_bytes"))],
            [ctx.t("e_accel"), hw.get("accelerator") or ctx.run.study.get("platform") or DASH]]
    for k, v in flatten(env.get("ascend") or {}).items():
        rows.append([f"{ctx.t('e_npu')}: {k}", fmt(v) if not isinstance(v, str) else v])
    md.table([ctx.t("col_item"), ctx.t("col_spec")], rows)
    md.h(3, ctx.t("s2_2"))
    osinfo = env.get("os") or {}
    kit = env.get("kit") or {}
    rows = [[ctx.t("e_os"), osinfo.get("platform") or DASH],
            [ctx.t("e_python"), dig(env, "python.version") or DASH]]
    for name, ver in (env.get("packages") or {}).items():
        if ver:
            rows.append([name, ver])
    commit = kit.get("commit")
    rows.append([ctx.t("e_kit"), f"{kit.get('version') or DASH} / {commit[:12] if commit else DASH}"
                 + (" (dirty)" if kit.get("dirty") else "")])
    md.table([ctx.t("col_item"), ctx.t("col_version")], rows)
    envvars = env.get("env") or {}
    md.p(f"{ctx.t('e_env')}: " + (", ".join(inline_code(f"{k}={v}") for k, v in envvars.items()) or ctx.t("e_none")))
    parallel_layout_table(ctx)


def parallel_layout_table(ctx: Ctx) -> None:
    """The engine's layout as it ran: parallel sizes, backend, ranks and each rank's cores (CPU) or device (NPU),
    from the study and the environment journaled with the first server command."""
    from studykit.engine.cmdline import parallel_layout
    from studykit.params import parse_study

    try:
        study = parse_study(ctx.run.study)
    except Exception:  # noqa: BLE001 - a params.yaml the schema no longer reads: the report still goes on
        return
    served = next((c for c in ctx.run.commands if c.get("is_vllm")), None)
    layout = parallel_layout(study, (served or {}).get("env") or {})
    md = ctx.md
    md.h(3, ctx.t("s2_3"))
    md.table([ctx.t("col_item"), ctx.t("col_value")], [
        ["TP × PP × DP", f"{layout['tensor_parallel_size']} × {layout['pipeline_parallel_size']} × "
                         f"{layout['data_parallel_size']}"],
        [ctx.t("pl_backend"), layout["distributed_executor_backend"]],
        [ctx.t("pl_world"), fmt(layout["world_size"])],
        *([["VLLM_CPU_OMP_THREADS_BIND", layout.get("VLLM_CPU_OMP_THREADS_BIND") or ctx.t("pl_auto")]]
          if study.platform == "cpu" else [])])
    md.table(["rank", "DP", "PP", "TP", ctx.t("pl_where")],
             [[r["rank"], r.get("dp_rank", 0), r["pp_rank"], r["tp_rank"], r.get("cores") or r.get("device") or DASH]
              for r in layout["ranks"]])


WEIGHT_LABEL = re.compile(r"^(build |download|modelscope|weights)", re.I)


def weight_commands(run: Run) -> list[dict]:
    seen, out = set(), []
    for c in sorted(run.commands, key=lambda c: c.get("started_utc") or ""):
        if c.get("is_vllm") or not c.get("command"):
            continue
        if WEIGHT_LABEL.match(str(c.get("label") or "")) or dig(c, "extra.model_dir"):
            if c["command"] not in seen:
                seen.add(c["command"])
                out.append(c)
    return out


def s3_weights(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("s3"))
    cmds = weight_commands(ctx.run)
    if not cmds:
        md.p(ctx.t("w_none"))
    else:
        md.p(ctx.t("w_intro", source=source_text(ctx)))
        md.code("\n".join(c["command"] for c in cmds))
    md.p(ctx.t("w_verify"))


def s4_quickstart(ctx: Ctx) -> None:
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
    if has:
        rows = []
        for key, label in (("dummy_gate", "q_gate_dummy"), ("real_gate", "q_gate_real")):
            gate = st.get(key)
            if gate is None:
                continue
            rows.append([ctx.t(label), check_status(ctx, gate.get("passed")),
                         value_cell(ctx, f"deploy.{key}_ready_s", gate.get("ready_seconds")),
                         (gate.get("error") or "").splitlines()[0] if gate.get("error") else ""])
        md.table([ctx.t("q_gates"), ctx.t("col_status"), f"{ctx.t('q_ready')} (s)", ctx.t("col_detail")], rows)
    md.h(3, ctx.t("s4_2"))
    chat_cmd = run.command("deploy", "smoke chat")
    chat = st.get("smoke_chat") or {}
    if not chat_cmd and not chat:
        if st.ran:
            md.p(ctx.t("q_no_chat"))
        return
    if chat_cmd:
        md.p(ctx.t("q_request"))
        md.code(chat_cmd["command"])
    if chat:
        md.p(ctx.t("q_reply"))
        md.quote(str(chat.get("reply") if chat.get("reply") is not None else DASH))
        md.p(ctx.t("q_usage", finish=chat.get("finish_reason") or DASH, p=fmt(dig(chat, "usage.prompt_tokens")),
                   c=fmt(dig(chat, "usage.completion_tokens")), s=fmt(chat.get("seconds"))))


def perf_stage(ctx: Ctx, stage: str, title_key: str) -> None:
    md = ctx.md
    md.h(3, ctx.t(title_key))
    st = ctx.run.stages[stage]
    if st.requested or st.ran:
        md.p(f"**{ctx.t('p_config')}**")
        params_table(ctx, stage)
        ref_config = ctx.ref.stage_config(stage) if ctx.ref else None
        if ref_config:
            shown = ", ".join(f"{k}={v}" for k, v in ref_config.items() if not isinstance(v, (dict, list)) or v)
            md.p(ctx.t("p_ref_config", config=inline_code(shown)))
    has = stage_banner(ctx, stage)
    cmds = stage_vllm_commands(ctx, stage)
    if cmds:
        md.p(ctx.t("p_commands"))
        md.code("\n".join(cmds))
    if not has:
        return
    numbers = [m for m in stage_metrics(stage) if not m.id.split(".", 1)[1].startswith("roofline")]
    if numbers:
        if stage == "serve" and len(dig(st.result, "points") or []) > 1:
            head = st.result["points"][0]
            md.p(ctx.t("p_headline", point=point_label(ctx, head)))
        metrics_table(ctx, numbers)
    points = dig(st.result, "points") or []
    if stage == "serve" and points:
        md.p(f"**{ctx.t('p_sweep')}**")
        serve_points_table(ctx, points)
        if any((pt.get("repeats") or 1) > 1 for pt in points):
            md.p(ctx.t("p_ci_note"))
    show_charts(ctx, stage)


def s5_performance(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("s5"))
    md.h(3, ctx.t("s5_1"))
    md.p(ctx.t("p_method"))
    perf_stage(ctx, "latency", "s5_2")
    perf_stage(ctx, "throughput", "s5_3")
    perf_stage(ctx, "serve", "s5_4")
    md.h(3, ctx.t("s5_5"))
    roof = [m for m in stage_metrics("latency") if m.id.startswith("latency.roofline")]
    lat = ctx.run.stages["latency"].result
    serve_roof = dig(ctx.run.stages["serve"].result, "roofline.points") or []
    if dig(lat, "roofline.efficiency_percent") is not None:
        metrics_table(ctx, roof)
        limit = dig(lat, "roofline.limit") or {}
        how = ", ".join(f"{k} {limit[k]}" for k in ("method", "threads", "cores") if limit.get(k) is not None)
        md.p(f"{limit.get('source') or DASH}" + (f" ({how})" if how else "") + f"; {dig(lat, 'roofline.assumes') or ''}")
    if serve_roof:
        md.table([ctx.t("col_point"), "mean TPOT (ms)", "GB/s", "%"],
                 [[point_label(ctx, r), fmt(r.get("mean_tpot_ms")), fmt(r.get("achieved_gbps")),
                   fmt(r.get("efficiency_percent"))] for r in serve_roof])
    if dig(lat, "roofline.efficiency_percent") is None and not serve_roof:
        md.p(ctx.t("p_roofline_none"))
    s5_startup(ctx)


def s5_startup(ctx: Ctx) -> None:
    """Every engine start of the run once: what start-up costs on this platform, in vLLM's own log lines."""
    md = ctx.md
    md.h(3, ctx.t("s5_6"))
    if not ctx.startup:
        md.p(ctx.t("st_none"))
        return
    md.p(ctx.t("st_intro"))
    md.table([ctx.t("col_stage"), ctx.t("col_engine"), f"{ctx.t('q_ready')} (s)", f"{ctx.t('st_weights')} (s)",
              f"{ctx.t('st_init')} (s)", f"{ctx.t('st_graph')} (s)", ctx.t("col_note")],
             [[r["stage"], f"{r['label']} ({r['kind']})", fmt(r["ready_s"]), fmt(r["weights_load_s"]),
               fmt(r["engine_init_s"]), fmt(r["graph_capture_s"]),
               (ctx.t("st_shared", users=", ".join(r["shared_by"])) if r.get("shared_by") else "")]
              for r in ctx.startup])
    total = sum(r["ready_s"] or 0 for r in ctx.startup)
    md.p(ctx.t("st_total", n=len(ctx.startup), s=fmt(total)))


def checks_table(ctx: Ctx, stages: list[str]) -> int:
    rows = []
    for stage in stages:
        for c in ctx.run.stages[stage].checks:
            status = check_status(ctx, c.get("status"))
            rows.append([stage, c.get("name") or DASH, status, c.get("detail") or ""])
    ctx.md.table([ctx.t("col_stage"), ctx.t("col_check"), ctx.t("col_status"), ctx.t("col_detail")], rows)
    return len(rows)


def s6_accuracy(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("s6"))
    md.h(3, ctx.t("s6_1"))
    deploy_gates(ctx)
    if stage_banner(ctx, "functional"):
        metrics_table(ctx, stage_metrics("functional"))
        if not checks_table(ctx, ["functional"]):
            md.p(ctx.t("a_none"))
        show_charts(ctx, "functional")
    md.h(3, ctx.t("s6_2"))
    acc = ctx.run.stages["accuracy"]
    if acc.requested or acc.ran:
        md.p(f"**{ctx.t('a_thresholds')}**")
        params_table(ctx, "accuracy")
    if stage_banner(ctx, "accuracy"):
        metrics_table(ctx, stage_metrics("accuracy"))
        per_prompt = acc.get("per_prompt") or []
        if per_prompt:
            md.table([ctx.t("col_prompt"), ctx.t("col_agreement"), ctx.t("col_first_divergence"),
                      by_id()["accuracy.top1_agreement"].en if ctx.lang == "en" else by_id()["accuracy.top1_agreement"].zh],
                     [[pp.get("id"), fmt(pp.get("token_agreement")), fmt(pp.get("first_divergence")),
                       fmt(dig(pp, "teacher_forced.top1_agreement"))] for pp in per_prompt])
        from studykit.stages.accuracy.stage import divergence_rows

        rows = divergence_rows(acc.result)
        if rows:
            md.p(ctx.t("a_divergences", margin=fmt(dig(ctx.run.params("accuracy"), "near_tie_margin"))))
            md.table([ctx.t("col_prompt"), ctx.t("col_position"), ctx.t("col_kind"), ctx.t("col_ref_token"),
                      ctx.t("col_vllm_token"), "p_ref(ref)", "p_ref(vLLM)", ctx.t("col_margin"), "p_vLLM(ref)",
                      "p_vLLM(vLLM)"],
                     [[r["prompt"], r["position"], ctx.t(f"kind_{r['kind']}"),
                       inline_code(repr(r.get("ref_token_text") or r["ref_token"])),
                       inline_code(repr(r.get("vllm_token_text") or r["vllm_token"])), fmt(r["p_ref_ref_token"]),
                       fmt(r["p_ref_vllm_token"]), fmt(r["margin"]), fmt(r["p_vllm_ref_token"]),
                       fmt(r["p_vllm_vllm_token"])] for r in rows])
        if not checks_table(ctx, ["accuracy"]):
            md.p(ctx.t("a_none"))
        show_charts(ctx, "accuracy")
    s6_tasks(ctx)


def s6_tasks(ctx: Ctx) -> None:
    """Task accuracy: lm-eval scores on vLLM and on the fp32 reference, paired item by item."""
    md = ctx.md
    st = ctx.run.stages.get("tasks")
    if st is None or not (st.requested or st.ran):
        return
    md.h(3, ctx.t("s6_3"))
    if not stage_banner(ctx, "tasks"):
        return
    res = st.result
    md.p(ctx.t("t_intro", version=res.get("lm_eval_version") or DASH, method=res.get("method") or ""))
    rows = []
    for t in res.get("tasks") or []:
        ref, cand, delta = t["reference"], t["candidate"], t["delta"]
        rows.append([t["task"], t["metric"], t["items"],
                     f"{fmt(ref['score'])} [{fmt(ref['ci95_low'])}, {fmt(ref['ci95_high'])}]",
                     f"{fmt(cand['score'])} [{fmt(cand['ci95_low'])}, {fmt(cand['ci95_high'])}]",
                     f"{fmt(delta['value'])} [{fmt(delta['ci95_low'])}, {fmt(delta['ci95_high'])}]",
                     f"{t['only_reference_correct']} / {t['only_candidate_correct']}", fmt(t["mcnemar_exact_p"])])
    md.table([ctx.t("t_task"), ctx.t("t_metric"), ctx.t("t_items"), ctx.t("t_reference"), ctx.t("t_vllm"),
              ctx.t("t_delta"), ctx.t("t_discordant"), ctx.t("t_p")], rows)
    for t in res.get("tasks") or []:
        if t.get("discordant"):
            md.p(ctx.t("t_discordant_items", task=t["task"], n=len(t["discordant"])))
            md.table([ctx.t("t_item"), ctx.t("t_target"), ctx.t("t_reference"), ctx.t("t_vllm")],
                     [[f"{d['task']}#{d['doc_id']}", inline_code(_answer_text(d.get("target"))),
                       inline_code(_answer_text(d["reference"]["answer"])) + f" ({fmt(d['reference']['score'])})",
                       inline_code(_answer_text(d["candidate"]["answer"])) + f" ({fmt(d['candidate']['score'])})"]
                      for d in t["discordant"][:20]])
    if not checks_table(ctx, ["tasks"]):
        md.p(ctx.t("a_none"))
    show_charts(ctx, "tasks")


def _answer_text(answer) -> str:
    if isinstance(answer, dict):
        answer = answer.get("text", answer.get("choice"))
    return str(answer)[:80].replace("|", "/").replace("`", "'").replace("\n", " ")


def deploy_gates(ctx: Ctx) -> None:
    """The seed's first functional rows (dummy gate, real-weight gate, chat completions), from deploy.json."""
    dep = ctx.run.stages["deploy"]
    if dep.result is None:
        return
    rows = []
    for key, label in (("dummy_gate", "q_gate_dummy"), ("real_gate", "q_gate_real")):
        gate = dep.get(key)
        if isinstance(gate, dict):
            detail = ctx.t("g_ready", s=fmt(gate.get("ready_seconds"))) if gate.get("passed") else \
                (gate.get("error") or DASH).splitlines()[0][:300]
            rows.append([ctx.t(label), check_status(ctx, gate.get("passed")), detail])
    chat = dep.get("smoke_chat")
    if isinstance(chat, dict) and chat:
        reply = chat.get("reply")
        rows.append(["Chat Completions", check_status(ctx, bool(isinstance(reply, str) and reply.strip())),
                     ctx.t("g_chat", n=fmt(dig(chat, "usage.completion_tokens")))])
    models = dep.get("models")
    if isinstance(models, list):
        served = ctx.run.params("model").get("served_model_name") or ctx.run.params("model").get("id")
        ids = [m.get("id") for m in models if isinstance(m, dict)]
        rows.append(["/v1/models", check_status(ctx, served in ids), ", ".join(map(str, ids)) or DASH])
    ctx.md.table([ctx.t("col_check"), ctx.t("col_status"), ctx.t("col_detail")], rows)


def s7_adaptation(ctx: Ctx) -> None:
    """From studykit.adaptation's notes: registry lookup in the installed vLLM and the remote-code question."""
    md, a = ctx.md, ctx.adaptation
    md.h(2, ctx.t("s7"))
    if not a or a.get("error"):
        md.p(ctx.t("ad_unknown") + (f" ({a['error']})" if a and a.get("error") else ""))
    else:
        version = a.get("vllm") or DASH
        registry = a.get("registry") or {}
        archs = a.get("architectures") or list(registry)
        for arch in archs:
            entry = registry.get(arch) or {}
            found = entry.get("in_vllm_registry")
            if found is True:
                md.p(ctx.t("ad_registry_yes", arch=inline_code(arch), version=version))
                if entry.get("vllm_module"):
                    md.code(f"# vllm ModelRegistry\n\"{arch}\": (\"{entry['vllm_module'].rsplit('.', 1)[-1]}\", "
                            f"\"{entry.get('vllm_class') or arch}\")  # {entry['vllm_module']}", "python")
            elif found is False:
                md.p(ctx.t("ad_registry_no", arch=inline_code(arch), version=version))
            else:
                md.p(ctx.t("ad_unknown") + (f" ({entry.get('error')})" if entry.get("error") else ""))
        trc = a.get("trust_remote_code_required")
        if trc is True:
            md.p(ctx.t("ad_trc_yes") + (f" {a.get('trust_remote_code_reason')}" if a.get("trust_remote_code_reason") else ""))
        elif trc is False:
            md.p(ctx.t("ad_trc_no"))
        if a.get("custom_code_files"):
            md.p(", ".join(inline_code(f) for f in a["custom_code_files"]))
    used = ctx.run.params("model").get("trust_remote_code")
    md.p(ctx.t("ad_trc_used", v="true" if used else "false"))


def s8_known_issues(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("s8"))
    failed = [(st.name, st.error) for st in ctx.run.stages.values()
              if st.name in MEASURING_STAGES and st.status not in ("passed", "not run")]
    for name, err in failed:
        md.p(ctx.t("stage_failed", stage=name, error=(err or DASH).splitlines()[0][:400]))
    bad_checks = [(st.name, c) for st in ctx.run.stages.values() for c in st.checks if c.get("status") == "failed"]
    if bad_checks:
        md.p(ctx.t("k_failed_checks"))
        md.bullets([f"{s}: {c.get('name')} — {c.get('detail') or ''}".rstrip(" —") for s, c in bad_checks])
    if ctx.warnings is None:
        md.p(ctx.t("k_no_logs"))
    elif not ctx.warnings:
        md.p(ctx.t("k_none"))
    else:
        md.p(ctx.t("k_intro"))
        md.table([ctx.t("col_level"), ctx.t("col_warning"), ctx.t("col_count"), ctx.t("col_logs"), ctx.t("col_note")],
                 [[w.get("level") or DASH, inline_code(w["message"][:300]), w["count"],
                   ", ".join(w.get("logs") or [])[:300], w.get("note") or ""] for w in ctx.warnings])


def all_checks(run: Run) -> list[tuple[str, dict]]:
    return [(st.name, c) for st in run.stages.values() for c in st.checks]


def s9_conclusion(ctx: Ctx) -> None:
    md, run = ctx.md, ctx.run
    md.h(2, ctx.t("s9"))
    requested = [s for s in MEASURING_STAGES if run.stages[s].requested or run.stages[s].ran]
    rows = []
    for s in requested:
        st = run.stages[s]
        rows.append([s, status_text(ctx, st.status), fmt(st.run_record.get("wall_seconds")),
                     fmt(st.run_record.get("vllm_seconds"))])
    md.table([ctx.t("col_stage"), ctx.t("col_status"), ctx.t("col_seconds"), ctx.t("col_vllm_seconds")], rows)
    not_passed = [s for s in requested if run.stages[s].status != "passed"]
    lines = []
    if not not_passed:
        lines.append(ctx.t("c_all_passed", n=len(requested)))
    else:
        lines.append(ctx.t("c_some_failed", n=len(not_passed), names=", ".join(not_passed)))
    dep = run.stages["deploy"]
    if dep.ran:
        gates = [dep.get("dummy_gate"), dep.get("real_gate")]
        ok = dep.status == "passed" and all((g or {}).get("passed") for g in gates if g is not None) \
            and bool(dig(dep.result, "smoke_chat.reply"))
        lines.append(ctx.t("c_deploy_ok") if ok else ctx.t("c_deploy_bad"))
    checks = all_checks(run)
    if checks:
        count = {k: sum(1 for _, c in checks if c.get("status") == k) for k in ("passed", "failed", "not_run")}
        lines.append(ctx.t("c_checks", passed=count["passed"], failed=count["failed"], not_run=count["not_run"],
                           total=len(checks)))
        failed = [f"{s}: {c.get('name')}" for s, c in checks if c.get("status") == "failed"]
        if failed:
            lines.append(ctx.t("c_checks_failed", names="; ".join(failed)))
    else:
        lines.append(ctx.t("c_no_checks"))
    lines.append(ctx.t("c_scope"))
    md.bullets(lines)


def s10_consistency(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("s10"))
    md.p(ctx.t("x_intro"))
    if not checks_table(ctx, list(MEASURING_STAGES)):
        md.p(ctx.t("x_none"))
    rows = []
    for name in MEASURING_STAGES:
        st = ctx.run.stages[name]
        in_results = (st.result or {}).get("status")
        in_run = st.run_record.get("status")
        if in_results and in_run:
            rows.append([ctx.t("x_status_agree", stage=name), check_status(ctx, in_results == in_run),
                         f"run.json: {in_run}, results/{name}.json: {in_results}"])
    if rows:
        md.p(ctx.t("x_report_checks"))
        md.table([ctx.t("col_check"), ctx.t("col_status"), ctx.t("col_detail")], rows)


def appendix(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("appendix"))
    cmds = [c for c in sorted(ctx.run.commands, key=lambda c: c.get("started_utc") or "") if c.get("command")]
    if not cmds:
        md.p(ctx.t("ap_none"))
        return
    md.p(ctx.t("ap_intro"))
    lines = []
    for i, c in enumerate(cmds, 1):
        rc = c.get("returncode")
        lines.append(f"# {i}. [{c.get('stage')}] {c.get('label')} "
                     f"({ctx.t('ap_rc', rc=DASH if rc is None else rc, s=fmt(c.get('seconds')))})")
        lines.append(c["command"])
    md.code("\n".join(lines))


SECTIONS: list[Callable[[Ctx], None]] = [s0_summary, s1_model, s2_environment, s3_weights, s4_quickstart, s5_performance,
                                         s6_accuracy, s7_adaptation, s8_known_issues, s9_conclusion,
                                         s10_consistency, appendix]
