"""The report's sections, in the seed's order, each written from the run's files only.

A section never computes a measurement: numbers are read from each stage's typed result (attributes, or the
dotted path a metric id names), commands from commands.jsonl; checks are picked by id. What is missing prints "—"; a stage that failed or did not run says so with its
error, and whatever it wrote before failing is still shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from studykit import stages
from studykit.schema.base import Check
from studykit.schema.metrics import by_id, dig, stage_metrics
from studykit.stages import STAGE_ORDER
from studykit.report.blocks import (Ctx, SummaryRow, checks_table, check_status, metric_label, metrics_table,
                                    point_label, stage_error, status_text)
from studykit.report.check_text import check_detail, check_label
from studykit.report.i18n import S
from studykit.report.mdtools import DASH, fmt, fmt_bytes, inline_code
from studykit.report.model import MEASURING_STAGES, Run, is_number


def _stat_text(stat: dict | None) -> str:
    """A serve MetricStat's dump: mean ± 95 % CI half-width."""
    if not stat:
        return DASH
    text = fmt(stat.get("mean"))
    return text + (f" ± {fmt(stat['ci95_half_width'])}" if stat.get("ci95_half_width") is not None else "")


def _figures(ctx: Ctx, ids: list[str]) -> str:
    """'label value unit' for metric ids, from the results (serve: mean ± 95 % CI over repeats)."""
    parts = []
    for mid in ids:
        m = by_id()[mid]
        st = ctx.run.stages[m.stage]
        if m.stage == "serve" and ".metrics." in m.path:
            text = _stat_text(dig(st.data, m.path.rsplit(".", 1)[0]))
        else:
            text = fmt(st.value(m))
        if text != DASH:
            parts.append(f"{metric_label(m, ctx.lang)} {text} {m.unit}".rstrip())
    return "; ".join(parts) or DASH


def _check_counts(ctx: Ctx, checks: list[Check]) -> str:
    n = {k: sum(1 for c in checks if c.status == k) for k in ("passed", "failed", "not_run")}
    return ctx.t("sum_checks", **n) if checks else DASH


def _like_for_like(ctx: Ctx, stage: str) -> str:
    """Whether this stage's shape matches the reference's (its params vs the reference's config)."""
    if not ctx.ref:
        return ""
    theirs = ctx.ref.stage_config(stage)
    if not theirs:
        return ctx.t("sum_ref_unknown")
    ours = ctx.run.stage_params(stage)
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


def stage_section(stage: str, part: str, ctx: Ctx) -> None:
    """A stage's own part of the report (studykit.stages.<stage>.section SECTIONS[part])."""
    stages.module(stage, "section").SECTIONS[part](ctx)


def summary_rows() -> list[tuple[str, SummaryRow]]:
    """(stage, row) for every row the stages declare, in stage order."""
    return [(stage, row) for stage in STAGE_ORDER if stages.has_part(stage, "section")
            for row in stages.module(stage, "section").SUMMARY]


def rerun_changes(ctx: Ctx) -> None:
    """Against a reference run: what changed beyond noise (studykit.compare), or that nothing did."""
    from studykit.compare.runs import compare_runs

    try:
        result = compare_runs(ctx.ref.run.root, ctx.run.root)
    except Exception as err:  # noqa: BLE001 - the report is written even when the comparison breaks
        ctx.md.p(ctx.t("rerun_error", error=f"{type(err).__name__}: {err}"))
        return
    changed = [c for c in result["changes"] if c.verdict in ("worse", "better")]
    differs = [section for section, rows in result["differs"].items() if rows]
    lead = ctx.t("rerun_differs", what=", ".join(differs)) if differs else ctx.t("rerun_same_setup")
    if not changed:
        ctx.md.p(lead + " " + ctx.t("rerun_none"))
        return
    ctx.md.p(lead + " " + ctx.t("rerun_changes", n=len(changed)))
    ctx.md.bullets([f"{c.label}: {ctx.t('rerun_' + c.verdict)} "
                    + (f"{c.change * 100:+.1f} %" if c.relative else f"{c.change:+.4g}") for c in changed])


def s0_summary(ctx: Ctx) -> None:
    """The verdict first: one row per stage or claim of the seed, its status, headline figures and checks."""
    md, run = ctx.md, ctx.run
    md.h(2, ctx.t("s0"))
    headers = [ctx.t("col_claim"), ctx.t("col_status"), ctx.t("col_headline"), ctx.t("col_checks")]
    if ctx.ref:
        headers.append(ctx.t("col_like"))
    rows = []
    for stage, row in summary_rows():
        st = run.stages[stage]
        if not (st.requested or st.ran):
            continue
        checks = [c for c in st.checks if row.check is None or c.id == row.check]
        if row.check is not None:
            # the row stands for one check (by id): without it the row says nothing, whatever the stage did
            status = _claim_status(ctx, checks) if checks else DASH
            details = "; ".join(check_detail(c, ctx.lang) for c in checks if c.detail) or DASH
            if checks and all(c.status == "not_run" for c in checks):
                figures = details
            else:
                figures = _figures(ctx, row.metrics) if row.metrics else details
        else:
            status = status_text(ctx, st.status)
            figures = row.figures(ctx) if row.figures else _figures(ctx, row.metrics)
        cells = [ctx.t(row.key), status, figures, _check_counts(ctx, checks)]
        if ctx.ref:
            cells.append(_like_for_like(ctx, stage) if stage in ("latency", "throughput", "serve") else "")
        rows.append(cells)
    md.table(headers, rows)
    if any(by_id()[i].source == "derived" for _, row in summary_rows() for i in row.metrics):
        md.p(f"† {ctx.t('derived_note')} {by_id()['throughput.output_tokens_per_s'].how}; "
             f"{by_id()['latency.decode_ms_per_token'].how}")
    if ctx.ref and ctx.ref.run is not None:
        rerun_changes(ctx)
    from studykit.report.notebook_html import notebook_links

    links = notebook_links(run.root)
    if links:
        md.p(ctx.t("sum_notebooks") + " " + " · ".join(
            f"{stage} ([{ctx.t('nb_reader')}]({reader}), [{ctx.t('nb_full')}]({full}))" for stage, reader, full in links))


def _claim_status(ctx: Ctx, checks: list[Check]) -> str:
    """One status for the checks of one id (several when it ran per subject): failed if any failed, passed if
    any passed and none failed, else not run."""
    statuses = {c.status for c in checks}
    return check_status(ctx, "failed" if "failed" in statuses else "passed" if "passed" in statuses else "not_run")


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
    ascend = env.get("ascend") or {}
    md.h(3, ctx.t("s2_1"))
    rows = npu_rows(ctx, ascend) if ascend else []
    accel = hw.get("accelerator")
    rows += [[ctx.t("e_cpu"), hw.get("cpu_model") or DASH],
             [ctx.t("e_cores"), f"{fmt(hw.get('logical_cores'))} / {fmt(hw.get('physical_cores'))}"],
             [ctx.t("e_flags"), ", ".join(hw.get("cpu_flags") or []) or DASH],
             [ctx.t("e_memory"), fmt_bytes(hw.get("memory_total_bytes"))]]
    if not ascend:
        rows.append([ctx.t("e_accel"), ctx.t("e_no_accel") if accel in (None, "", "none", "cpu")
                     and ctx.run.study.get("platform") == "cpu" else accel or DASH])
    md.table([ctx.t("col_item"), ctx.t("col_spec")], rows)
    if ascend.get("errors"):
        md.p("⚠ " + ctx.t("e_ascend_errors", errors="; ".join(map(str, ascend["errors"]))))
    md.h(3, ctx.t("s2_2"))
    osinfo = env.get("os") or {}
    ascend = env.get("ascend") or {}
    kit = env.get("kit") or {}
    rows = [[ctx.t("e_os"), osinfo.get("platform") or DASH],
            [ctx.t("e_python"), dig(env, "python.version") or DASH]]
    for name, ver in (env.get("packages") or {}).items():
        if ver:
            rows.append([name, ver])
    for key, label in (("cann", "e_cann"), ("driver", "e_driver")):
        if dig(ascend, f"{key}.version"):
            rows.append([ctx.t(label), dig(ascend, f"{key}.version")])
    commit = kit.get("commit")
    rows.append([ctx.t("e_kit"), f"{kit.get('version') or DASH} / {commit[:12] if commit else DASH}"
                 + (" (dirty)" if kit.get("dirty") else "")])
    md.table([ctx.t("col_item"), ctx.t("col_version")], rows)
    envvars = env.get("env") or {}
    md.p(f"{ctx.t('e_env')}: " + (", ".join(inline_code(f"{k}={v}") for k, v in envvars.items()) or ctx.t("e_none")))
    parallel_layout_table(ctx)


def npu_rows(ctx: Ctx, ascend: dict) -> list[list[str]]:
    """The seed's 2.1 rows from npu-smi (studykit.evidence.ascend): model, count, HBM per card, npu-smi version."""
    smi = ascend.get("npu_smi") or {}
    model = smi.get("chip_model")
    hbm = [mb for mb in smi.get("hbm_total_mb_per_chip") or [] if mb]
    hbm_text = DASH
    if hbm:
        sizes = sorted({round(mb / 1024) for mb in hbm})
        hbm_text = ctx.t("e_hbm_value", gb=" / ".join(str(gb) for gb in sizes))
    return [[ctx.t("e_npu_model"), ", ".join(model) if isinstance(model, list) else model or DASH],
            [ctx.t("e_npu_count"), fmt(smi.get("chip_count"))],
            [ctx.t("e_hbm"), hbm_text],
            [ctx.t("e_npu_smi"), smi.get("version") or DASH]]


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
    stage_section("deploy", "quickstart", ctx)


def s5_performance(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("s5"))
    md.h(3, ctx.t("s5_1"))
    md.p(ctx.t("p_method"))
    for stage in ("latency", "throughput", "serve"):
        stage_section(stage, "performance", ctx)
    md.h(3, ctx.t("s5_5"))
    roof = [m for m in stage_metrics("latency") if m.id.startswith("latency.roofline")]
    lat_roof = getattr(ctx.run.stages["latency"].result, "roofline", None)
    serve_roof = getattr(ctx.run.stages["serve"].result, "roofline", None)
    serve_points = serve_roof.points if serve_roof else []
    lat_shown = lat_roof is not None and lat_roof.efficiency_percent is not None
    if lat_shown:
        metrics_table(ctx, roof)
        limit = lat_roof.limit
        # method, threads, cores: what the bandwidth probe adds beside source (BandwidthLimit keeps them as given)
        extra = (limit.model_extra or {}) if limit else {}
        how = ", ".join(f"{k} {extra[k]}" for k in ("method", "threads", "cores") if extra.get(k) is not None)
        md.p(f"{limit.source if limit else DASH}" + (f" ({how})" if how else "") + f"; {lat_roof.assumes or ''}")
    if serve_points:
        md.table([ctx.t("col_point"), "mean TPOT (ms)", "GB/s", "%"],
                 [[point_label(ctx, r), fmt(r.mean_tpot_ms), fmt(r.achieved_gbps), fmt(r.efficiency_percent)]
                  for r in serve_points])
    if not lat_shown and not serve_points:
        md.p(ctx.t("p_roofline_none"))
    stage_section("profile", "why", ctx)
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


def s6_accuracy(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("s6"))
    md.h(3, ctx.t("s6_1"))
    stage_section("functional", "features", ctx)
    md.h(3, ctx.t("s6_2"))
    stage_section("accuracy", "accuracy", ctx)
    stage_section("tasks", "tasks", ctx)


def s7_adaptation(ctx: Ctx) -> None:
    """7.1 from studykit.engine.adaptation's notes (registry lookup in the installed vLLM, remote code), 7.2 what the
    run shows of the operators (the stages that ran the model), 7.3 what the kit changed (flags only)."""
    md, a = ctx.md, ctx.adaptation
    md.h(2, ctx.t("s7"))
    md.h(3, ctx.t("s7_1"))
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
    used = ctx.run.params("model").get("trust_remote_code")
    md.p(ctx.t("ad_trc_used", v="true" if used else "false"))
    md.h(3, ctx.t("s7_2"))
    ran = [s for s in MEASURING_STAGES if ctx.run.stages[s].status == "passed"]
    md.p(ctx.t("ad_ops_ran", stages=", ".join(ran) or DASH))
    if ctx.warnings is not None:
        md.p(ctx.t("ad_ops_errors", n=sum(1 for w in ctx.warnings if w.get("level") == "error")))
    if a and a.get("custom_code_files"):
        md.p(ctx.t("ad_custom_code", files=", ".join(inline_code(f) for f in a["custom_code_files"])))
    elif a and a.get("trust_remote_code_required") is False:
        md.p(ctx.t("ad_no_custom_code"))
    md.h(3, ctx.t("s7_3"))
    md.p(ctx.t("ad_unchanged", version=(a or {}).get("vllm") or DASH))
    extra = ctx.run.params("server").get("extra_args") or []
    md.p(ctx.t("ad_extra_args", args=inline_code(" ".join(map(str, extra)))) if extra else ctx.t("ad_no_extra_args"))


def s8_known_issues(ctx: Ctx) -> None:
    """Each failed stage and failed check with its cause and effect; then 8.1, the log warnings grouped."""
    md = ctx.md
    md.h(2, ctx.t("s8"))
    issues = []
    for st in ctx.run.stages.values():
        if st.name in MEASURING_STAGES and st.status not in ("passed", "not run"):
            issues.append((ctx.t("k_stage_issue", stage=st.name, status=status_text(ctx, st.status)),
                           (stage_error(ctx, st.name) or DASH).splitlines()[0][:400], ctx.t("k_effect_stage")))
    for st in ctx.run.stages.values():
        for c in st.checks:
            if c.status != "failed":
                continue
            effect = ctx.t("k_effect_metric", metric=metric_label(by_id()[c.metric], ctx.lang)) \
                if c.metric in by_id() else ctx.t("k_effect_check")
            issues.append((ctx.t("k_check_issue", name=f"{st.name}: {check_label(c, ctx.lang)}"),
                           check_detail(c, ctx.lang) or DASH, effect))
    if not issues:
        md.p(ctx.t("k_no_issues"))
    else:
        md.p("\n".join(f"{i}. {title}\n   - {ctx.t('k_cause', text=cause)}\n   - {effect}"
                       for i, (title, cause, effect) in enumerate(issues, 1)))
    md.h(3, ctx.t("s8_1"))
    if ctx.warnings is None:
        md.p(ctx.t("k_no_logs"))
    elif not ctx.warnings:
        md.p(ctx.t("k_none"))
    else:
        md.p(ctx.t("k_intro"))
        md.table([ctx.t("col_level"), ctx.t("col_warning"), ctx.t("col_count"), ctx.t("col_logs"), ctx.t("col_note")],
                 [[level_text(ctx, w.get("level")), inline_code(w["message"][:300]), w["count"],
                   ", ".join(w.get("logs") or [])[:300], note_text(ctx, w.get("note"))] for w in ctx.warnings])


def level_text(ctx: Ctx, level: str | None) -> str:
    key = f"level_{level}"
    return ctx.t(key) if key in S else level or DASH


def note_text(ctx: Ctx, note) -> str:
    """A warning's explanation: one text, or {zh, en} (studykit.engine.logwarnings)."""
    if isinstance(note, dict):
        return note.get(ctx.lang) or ""
    return note or ""


def all_checks(run: Run) -> list[tuple[str, Check]]:
    """The measuring stages' checks: the report stage's own are about the report (and at report time its
    results/report.json, if any, is an earlier build's)."""
    return [(st.name, c) for st in run.stages.values() if st.name in MEASURING_STAGES for c in st.checks]


def verdict(ctx: Ctx) -> str:
    """The conclusion's first line: passed only when every requested stage passed and no check failed."""
    run = ctx.run
    requested = [s for s in MEASURING_STAGES if run.stages[s].requested or run.stages[s].ran]
    if not requested:
        return f"**{ctx.t('c_verdict')}: {DASH}** {ctx.t('c_verdict_none')}"
    checks = all_checks(run)
    count = {k: sum(1 for _, c in checks if c.status == k) for k in ("passed", "failed", "not_run")}
    bad = [s for s in requested if run.stages[s].status != "passed"]
    if not bad and not count["failed"]:
        return (f"**{ctx.t('c_verdict')}: {ctx.t('verdict_passed')}** — "
                + ctx.t("c_verdict_pass", n=len(requested), passed=count["passed"], not_run=count["not_run"]))
    return (f"**{ctx.t('c_verdict')}: {ctx.t('verdict_failed')}** — "
            + ctx.t("c_verdict_fail", bad=len(bad), names=", ".join(bad) or DASH, failed=count["failed"]))


def s9_conclusion(ctx: Ctx) -> None:
    md, run = ctx.md, ctx.run
    md.h(2, ctx.t("s9"))
    md.p(verdict(ctx))
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
        res = dep.result
        ok = res is not None and dep.status == "passed" \
            and all(g.passed for g in (res.dummy_gate, res.real_gate) if g is not None) \
            and bool(res.smoke_chat and res.smoke_chat.reply)
        lines.append(ctx.t("c_deploy_ok") if ok else ctx.t("c_deploy_bad"))
    checks = all_checks(run)
    if checks:
        count = {k: sum(1 for _, c in checks if c.status == k) for k in ("passed", "failed", "not_run")}
        lines.append(ctx.t("c_checks", passed=count["passed"], failed=count["failed"], not_run=count["not_run"],
                           total=len(checks)))
        failed = [f"{s}: {check_label(c, ctx.lang)}" for s, c in checks if c.status == "failed"]
        if failed:
            lines.append(ctx.t("c_checks_failed", names="; ".join(failed)))
    else:
        lines.append(ctx.t("c_no_checks"))
    lines.append(ctx.t("c_scope"))
    md.bullets(lines)


def appendix_a_consistency(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("app_a"))
    md.p(ctx.t("x_intro"))
    if not checks_table(ctx, list(MEASURING_STAGES)):
        md.p(ctx.t("x_none"))
    rows = []
    for name in MEASURING_STAGES:
        st = ctx.run.stages[name]
        in_results = st.result.status if st.result is not None else None
        in_run = st.run_record.get("status")
        if in_results and in_run:
            rows.append([ctx.t("x_status_agree", stage=name), check_status(ctx, in_results == in_run),
                         f"run.json: {status_text(ctx, in_run)}, results/{name}.json: {status_text(ctx, in_results)}"])
    if rows:
        md.p(ctx.t("x_report_checks"))
        md.table([ctx.t("col_check"), ctx.t("col_status"), ctx.t("col_detail")], rows)


def appendix_b_commands(ctx: Ctx) -> None:
    md = ctx.md
    md.h(2, ctx.t("app_b"))
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
                                         appendix_a_consistency, appendix_b_commands]
