"""The report built from real recorded runs (tests/data/runs/golden*, written by tools/record_golden_run.py).

What it must guarantee: every section of the seed in both languages; every number in a table is the JSON's;
every command shown is one commands.jsonl recorded; a failed stage is shown with its error; failing checks
are marked next to their number; reference and delta columns when comparing.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import string
from pathlib import Path

import pytest

from studykit.report.check_text import zh_detail
import yaml

from studykit.report import build_report
from studykit.report.blocks import metric_label as _label
from studykit.report.i18n import S
from studykit.report.mdtools import fmt
from studykit.report.reference import ReferenceError, load_reference
from studykit.stages import STAGE_ORDER

DATA = Path(__file__).parent / "data" / "runs"
RUNS = ("golden", "golden-failed")


def _recorded_without_check_ids(run: Path) -> bool:
    return any("id" not in c for p in (run / "results").glob("*.json") if p.stem in STAGE_ORDER
               for c in json.loads(p.read_text()).get("checks", []))


# The golden runs were recorded before checks had ids; the lead re-records them. Until then a copy gets a
# placeholder id per check (below) so the strict reader accepts it, and what needs the real ids is skipped.
LEGACY_GOLDEN = any(_recorded_without_check_ids(DATA / name) for name in RUNS)
needs_check_ids = pytest.mark.skipif(LEGACY_GOLDEN, reason="golden runs are re-recorded with check ids")


def golden_copy(name: str, dest: Path) -> Path:
    """A golden run copied to `dest`; a check recorded without an id gets `<stage>.no_id_recorded_<i>`, an id no
    check has, so nothing selects it by accident; a serve command recorded before ServeCommand named its run
    (`name`, `request_rate_arg`) gets those under today's names (`run`, `request_rate`). Does nothing to runs
    recorded with today's fields."""
    shutil.copytree(DATA / name, dest)
    for p in (dest / "results").glob("*.json"):
        doc = json.loads(p.read_text())
        changed = False
        if p.stem in STAGE_ORDER and any("id" not in c for c in doc.get("checks", [])):
            doc["checks"] = [{"id": f"{p.stem}.no_id_recorded_{i}", **c} if "id" not in c else c
                             for i, c in enumerate(doc["checks"])]
            changed = True
        if p.stem == "serve":
            for cmd in doc.get("commands", []):
                if "run" not in cmd and "name" in cmd:
                    cmd["run"], cmd["request_rate"] = cmd.pop("name"), cmd.pop("request_rate_arg")
                    changed = True
        if changed:
            p.write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    return dest
SEED_REF = "params/reference/seed-bitcpm4-0.5b-ascend.yaml"
ROOT = Path(__file__).resolve().parents[1]

SECTIONS = {
    "zh": ["摘要", "1. 模型简介", "2. 环境信息", "3. 模型权重获取", "4. 快速启动", "5. 性能测评", "6. 精度与功能验证",
           "7. 关键适配说明", "8. 已知问题与注意事项", "9. 结论", "附录 A 一致性检查", "附录 B 命令记录"],
    "en": ["Summary", "1. Model introduction", "2. Environment", "3. Weight acquisition", "4. Quick start", "5. Performance",
           "6. Accuracy and functional checks", "7. Adaptation notes", "8. Known issues", "9. Conclusion",
           "Appendix A Consistency checks", "Appendix B Command record"],
}
SUBSECTIONS = {"zh": ["5.2 Latency 测试", "5.3 Throughput 测试", "5.4 Serve 测试", "6.2 精度对标测试"],
               "en": ["5.2 Latency", "5.3 Throughput", "5.4 Serve", "6.2 Accuracy comparison"]}
# Every heading of the zh report of a full run, in order (../shared/reference/zh-report-terms.md's structure).
ZH_HEADINGS = ["## 摘要", "## 1. 模型简介", "## 2. 环境信息", "### 2.1 硬件环境", "### 2.2 软件环境", "### 2.3 并行布局",
               "## 3. 模型权重获取", "## 4. 快速启动", "### 4.1 服务部署", "### 4.2 功能验证", "## 5. 性能测评",
               "### 5.1 测试方法", "### 5.2 Latency 测试", "### 5.3 Throughput 测试", "### 5.4 Serve 测试",
               "### 5.5 性能瓶颈分析 (Roofline 分析、主机/设备拆分)", "### 5.6 引擎启动耗时", "## 6. 精度与功能验证", "### 6.1 特性验证",
               "### 6.2 精度对标测试", "### 6.3 任务精度 (lm-evaluation-harness)", "## 7. 关键适配说明", "### 7.1 架构复用",
               "### 7.2 算子兼容性", "### 7.3 适配改动", "## 8. 已知问题与注意事项", "### 8.1 日志告警汇总", "## 9. 结论",
               "## 附录 A 一致性检查", "## 附录 B 命令记录"]
EN_HEADINGS = ["## Summary", "## 1. Model introduction", "## 2. Environment", "### 2.1 Hardware", "### 2.2 Software",
               "### 2.3 Parallel layout", "## 3. Weight acquisition", "## 4. Quick start", "### 4.1 Serving",
               "### 4.2 Smoke check", "## 5. Performance", "### 5.1 Method", "### 5.2 Latency", "### 5.3 Throughput",
               "### 5.4 Serve", "### 5.5 Why this speed (roofline, host/device split)", "### 5.6 Engine start-up", "## 6. Accuracy and functional checks",
               "### 6.1 Feature checks", "### 6.2 Accuracy comparison", "### 6.3 Task accuracy (lm-evaluation-harness)",
               "## 7. Adaptation notes", "### 7.1 Architecture reuse", "### 7.2 Operator compatibility",
               "### 7.3 Adaptation changes", "## 8. Known issues", "### 8.1 Log warnings", "## 9. Conclusion",
               "## Appendix A Consistency checks", "## Appendix B Command record"]


def mark(lang: str) -> str:
    """What a value cell adds after its number when a check on it failed: ' [failed: names]'."""
    return " [" + S["x_marked"][lang].split("{")[0]


def shown_check_name(c: dict, lang: str) -> str:
    """A check's name as the report must show it: its id's entry in report.check_text, never the recorded words."""
    from studykit.report.check_text import CHECKS

    if c["id"] in CHECKS:
        return getattr(CHECKS[c["id"]], lang)
    return f"⚠ 未登记的检查项 {c['id']}" if lang == "zh" else f"⚠ {c['name']} (unregistered check id {c['id']})"


def shown_check_label(c: dict, lang: str) -> str:
    from studykit.report.check_text import SUBJECT_WORDS

    subject = c.get("subject")
    subject = SUBJECT_WORDS.get(subject, subject) if lang == "zh" and subject else subject
    return shown_check_name(c, lang) + (f" ({subject})" if subject else "")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Each golden run copied and reported on once, with the reference its params name (the seed's numbers)."""
    out = {}
    for name in RUNS:
        d = golden_copy(name, tmp_path_factory.mktemp(name) / name)
        ref = yaml.safe_load((d / "params.yaml").read_text())["report"]["reference"]
        build_report(d, reference=ref)
        out[name] = d
    return out


def metric_label(metric_id: str, lang: str) -> str:
    from studykit.schema.metrics import metric

    return _label(metric(metric_id), lang)


def read(run: Path, lang: str) -> str:
    return (run / f"report.{lang}.md").read_text(encoding="utf-8")


def result(run: Path, stage: str) -> dict:
    return json.loads((run / "results" / f"{stage}.json").read_text())


def section(text: str, heading: str) -> str:
    """The text under a heading (## or ###) up to the next heading of the same or higher level."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(heading)}\s*", line)), None)
    assert start is not None, f"heading {heading!r} not found"
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    fenced, out = False, []
    for line in lines[start + 1:]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            break
        out.append(line)
    return "\n".join(out)


def tables(text: str) -> list[list[dict]]:
    """Markdown tables as lists of {header: cell} rows."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            head = split(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(head, split(lines[i]))))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def parse_number(cell: str) -> tuple[float, float] | None:
    """(value, tolerance) of a formatted number cell; None if the cell is not a number."""
    m = re.match(r"^([+-]?[\d,]*\.?\d+(?:e[+-]?\d+)?)(?:\s|$)", cell)
    if not m:
        return None
    text = m.group(1).replace(",", "")
    value = float(text)
    if "e" in text:
        return value, abs(value) * 1e-3
    decimals = len(text.split(".")[1]) if "." in text else 0
    return value, 0.5 * 10 ** -decimals + 1e-12


# ------------------------------------------------------------------ sections and wording

@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("name", RUNS)
def test_every_section_in_seed_order(built, name, lang):
    text = read(built[name], lang)
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert [h for h in headings if any(h.startswith(s) for s in SECTIONS[lang])] == headings
    starts = [next(i for i, h in enumerate(headings) if h.startswith(s)) for s in SECTIONS[lang]]
    assert starts == sorted(starts), headings
    for sub in SUBSECTIONS[lang]:
        assert re.search(rf"^### {re.escape(sub)}$", text, re.M), sub


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_report_opens_with_the_summary(built, lang):
    text = read(built["golden"], lang)
    assert re.findall(r"^## (.+)$", text, re.M)[0] == SECTIONS[lang][0]
    rows = tables(section(text, SECTIONS[lang][0]))[0]
    claim = "测评项" if lang == "zh" else "Claim"
    assert len(rows) == 9  # deploy, latency, throughput, serve, accuracy, tasks, 3 functional claims
    serve = next(r for r in rows if "serve" in r[claim])
    stat = result(built["golden"], "serve")["points"][0]["metrics"]["mean_ttft_ms"]
    assert fmt(stat["mean"]) in serve["主要数字" if lang == "zh" else "Headline figures"]
    like = serve["与参考可比?" if lang == "zh" else "Like for like with the reference?"]
    assert "input_len 32 ≠ 128" in like and "platform cpu ≠ npu" in like


@needs_check_ids
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_summary_claim_of_one_check_shows_that_check(built, lang):
    """The default study does not compare graph and eager: its row is the check functional.graph_vs_eager,
    not run, with the reason."""
    (ge,) = [c for c in result(built["golden"], "functional")["checks"] if c["id"] == "functional.graph_vs_eager"]
    assert ge["status"] == "not_run" and ge["detail"]
    rows = tables(section(read(built["golden"], lang), SECTIONS[lang][0]))[0]
    graph = next(r for r in rows if r[S["col_claim"][lang]] == S["sum_graph"][lang])
    assert graph[S["col_status"][lang]] == S["status_not run"][lang]
    # the zh report shows the detail through its zh template (report/check_text.py), the en report as recorded
    want = ge["detail"] if lang == "en" else zh_detail("functional.graph_vs_eager", ge["detail"])
    assert want and graph[S["col_headline"][lang]] == want


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_summary_and_marks_pick_checks_by_id_not_by_their_words(tmp_path, lang):
    """A check named like another claim is not that claim's check; a renamed check still is. The ids are the
    real ones (functional's SUMMARY), written into a copy of the golden run."""
    run = golden_copy("golden", tmp_path / "run")
    fn = result(run, "functional")
    fn["checks"] = [
        {"id": "functional.graph_vs_eager", "name": "renamed: nothing about the modes here", "status": "failed",
         "detail": "the eager tokens differ at position 3", "metric": None},
        {"id": "functional.prefix_caching", "name": "graph and eager give the same greedy tokens",
         "status": "passed", "detail": "hits as expected", "metric": "functional.prefix_cache_hit_rate"},
        {"id": "functional.chunked_prefill", "name": "graph mode = eager", "status": "failed",
         "detail": "one step only", "metric": "functional.chunked_prefill_prompt_tokens"}]
    (run / "results" / "functional.json").write_text(json.dumps(fn))
    build_report(run, languages=[lang])
    text = read(run, lang)
    rows = {r[S["col_claim"][lang]]: r for r in tables(section(text, SECTIONS[lang][0]))[0]}
    status = S["col_status"][lang]
    assert rows[S["sum_graph"][lang]][status] == S["status_failed"][lang]
    # no metric id on the row: its figures are the check's detail (zh: a detail of no known shape, after a lead-in)
    assert rows[S["sum_graph"][lang]][S["col_headline"][lang]] == \
        ("原文:" if lang == "zh" else "") + "the eager tokens differ at position 3"
    assert rows[S["sum_prefix"][lang]][status] == S["status_passed"][lang]
    assert rows[S["sum_chunked"][lang]][status] == S["status_failed"][lang]
    metric_rows = {r[S["col_metric"][lang]]: r[S["col_value"][lang]] for t in tables(section(text, "6.1 " + (
        "特性验证" if lang == "zh" else "Feature checks"))) if S["col_metric"][lang] in t[0] for r in t}
    chunked = {"id": "functional.chunked_prefill", "name": "graph mode = eager"}
    assert metric_rows[metric_label("functional.chunked_prefill_prompt_tokens", lang)].endswith(
        f" [{S['x_marked'][lang].format(names=shown_check_label(chunked, lang))}]")
    assert mark(lang) not in metric_rows[metric_label("functional.prefix_cache_hit_rate", lang)]


def test_a_claim_whose_check_is_missing_says_nothing_rather_than_the_stage_status(tmp_path):
    run = golden_copy("golden", tmp_path / "run")
    fn = result(run, "functional")
    fn["checks"] = []
    (run / "results" / "functional.json").write_text(json.dumps(fn))
    build_report(run, languages=["en"])
    rows = {r["Claim"]: r for r in tables(section(read(run, "en"), "Summary"))[0]}
    assert rows[S["sum_graph"]["en"]]["Status"] == "—" and rows[S["sum_prefix"]["en"]]["Status"] == "—"


def test_configuration_is_the_params_the_stage_ran_with(tmp_path):
    """params.yaml edited after the run does not change what the report says the stage ran with."""
    run = golden_copy("golden", tmp_path / "run")
    study = yaml.safe_load((run / "params.yaml").read_text())
    ran = result(run, "throughput")["params"]["output_len"]
    study["throughput"]["output_len"] = ran + 96
    (run / "params.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    build_report(run, reference=SEED_REF, languages=["en"])
    text = read(run, "en")
    config = {r["Item"]: r["Value"] for r in tables(section(text, "5.3 Throughput"))[0]}
    assert config["output_len"] == str(ran)
    like = next(r for r in tables(section(text, "Summary"))[0] if r["Claim"] == S["sum_throughput"]["en"])
    assert f"output_len {ran} ≠ 128" in like["Like for like with the reference?"]


def test_chinese_uses_the_seed_terms(built):
    zh = read(built["golden"], "zh")
    # the words of ../shared/reference/zh-report-terms.md: 时延 throughout, never mixed with 延迟
    assert "延迟" not in zh
    for term in ("时延", "吞吐", "首 token 时延 (TTFT)", "平均时延", "请求吞吐", "输出 token 吞吐", "处理总 prompt tokens",
                 "每个输出 token 时延 (TPOT)", "Decode 单 token 时延", "Prefill 时延", "95% 置信区间"):
        assert term in zh, term


def test_i18n_twins_have_the_same_placeholders():
    for key, texts in S.items():
        assert set(texts) == {"zh", "en"}, key
        fields = {lang: {f[1] for f in string.Formatter().parse(t) if f[1]} for lang, t in texts.items()}
        assert fields["zh"] == fields["en"], key


# ------------------------------------------------------------------ numbers come from the JSON, cell by cell

def stored(run: Path, stage: str) -> dict | None:
    path = run / "results" / f"{stage}.json"
    return json.loads(path.read_text()) if path.exists() else None


def status_word(status, lang: str) -> str:
    key = {True: "status_passed", False: "status_failed", "not_run": "status_not run"}.get(status, f"status_{status}")
    return S[key][lang]


def stage_params(run: Path, stage: str) -> dict:
    """What the report must show as a stage's configuration: the params stored with its result, params.yaml's
    block only when there are none."""
    doc = stored(run, stage) or {}
    return doc.get("params") or yaml.safe_load((run / "params.yaml").read_text()).get(stage) or {}


def expected_table(run: Path, stage: str, heads: tuple[str, ...], lang: str, heading: str) -> list[list[str]]:
    """Every row of a §5/§6 table, cell by cell, built from results/<stage>.json (and i18n's words); the table
    is recognised by its headers, and a table this does not know fails the test."""
    from studykit.report.mdtools import cell, inline_code
    from studykit.schema.metrics import dig, metric, stage_metrics

    w = lambda key, **kw: S[key][lang].format(**kw)  # noqa: E731 - the report's words in this language
    doc = stored(run, stage) or {}
    point = lambda p: w("point_label", rate=p["request_rate"],  # noqa: E731
                        conc=p["max_concurrency"] if p.get("max_concurrency") else w("unlimited"))
    if heads == (w("col_item"), w("col_value"), "source", "measured", "multiple"):  # accuracy's thresholds
        return [[name, fmt(b["value"]), b["source"],
                 f"{b['measurement']} = {fmt(b['measured'])}" if b.get("measurement") else "—",
                 b.get("formula") or fmt(b.get("multiple"))] for name, b in doc["threshold_basis"].items()]
    if heads == ({"zh": "校准项", "en": "Calibration"}[lang], w("col_value")):
        return [[k, fmt(doc["calibration"][k])] for k in ("top1_disagreements", "prob_max_error", "prob_error_p99",
                                                          "max_margin_shift", "margin_shift_p99", "mean_kl",
                                                          "max_kl", "kl_p99")]
    if heads[:2] == (w("col_item"), w("col_value")):
        return [[k, fmt(v) if not isinstance(v, str) else v] for k, v in stage_params(run, stage).items()
                if not isinstance(v, dict) and v not in (None, [], "")]
    if heads[:3] == (w("col_metric"), w("col_value"), w("col_unit")):
        roofline = heading.startswith("5.5")
        # the bench stages' energy rows are their energy table's, not the metric table's
        ms = [m for m in stage_metrics(stage) if stage not in ("latency", "throughput", "serve")
              or (m.id.split(".", 1)[1].startswith("roofline") == roofline and "energy" not in m.path.split("."))]
        return [[_label(m, lang), fmt(dig(doc, m.path)), m.unit or "—"] for m in ms]
    if heads[:2] == (w("col_point"), w("col_repeats")):
        cols = ("request_throughput", "output_throughput", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
                "p99_tpot_ms", "completed")
        assert heads[2:] == tuple(f"{metric_label(f'serve.{c}', lang)} ({metric(f'serve.{c}').unit})" for c in cols)

        def stat(p, c):
            st = p["metrics"][c]
            return fmt(st["mean"]) + (f" ± {fmt(st['ci95_half_width'])}" if st.get("ci95_half_width") is not None
                                      else "")
        return [[point(p), fmt(p["repeats"]), *[stat(p, c) for c in cols]] for p in doc["points"]]
    if heads == (w("col_point"), "mean TPOT (ms)", "GB/s", "%"):
        return [[point(p), fmt(p["mean_tpot_ms"]), fmt(p["achieved_gbps"]), fmt(p["efficiency_percent"])]
                for p in stored(run, "serve")["roofline"]["points"]]  # §5.5 shows serve's points
    if heads == (w("col_stage"), w("col_check"), w("col_subject"), w("col_status"), w("col_detail")):
        from studykit.report.check_text import SUBJECT_WORDS, zh_detail

        def detail(c):
            if not c["detail"]:
                return "—"
            if lang == "en":
                return cell(c["detail"])
            zh = zh_detail(c["id"], c["detail"])
            return cell(zh if zh is not None else "原文:" + (
                c["detail"] if shown_check_name(c, "zh") != f"⚠ 未登记的检查项 {c['id']}" else f"{c['name']}: {c['detail']}"))
        subject = lambda c: (SUBJECT_WORDS.get(c["subject"], c["subject"]) if lang == "zh" else c["subject"]) \
            if c.get("subject") else "—"  # noqa: E731
        return [[stage, cell(shown_check_name(c, lang)), cell(subject(c)), status_word(c["status"], lang), detail(c)]
                for c in doc["checks"]]
    if heads == (w("col_check"), w("col_status"), w("col_detail")):  # §4.2's start and answer table, deploy.json
        dep = stored(run, "deploy")
        rows = [[w(key), status_word(dep[gate]["passed"], lang), w("g_ready", s=fmt(dep[gate]["ready_seconds"]))]
                for gate, key in (("dummy_gate", "q_gate_dummy"), ("real_gate", "q_gate_real"))]
        rows.append(["Chat Completions", status_word(True, lang),
                     w("g_chat", n=fmt(dep["smoke_chat"]["usage"]["completion_tokens"]))])
        return rows + [["/v1/models", status_word(True, lang), ", ".join(m["id"] for m in dep["models"])]]
    if heads == (w("col_prompt"), w("col_agreement"), w("col_first_divergence"),
                 metric_label("accuracy.top1_agreement", lang)):
        return [[pp["id"], fmt(pp["token_agreement"]), fmt(pp.get("first_divergence")),
                 fmt(dig(pp, "teacher_forced.top1_agreement"))] for pp in doc["per_prompt"]]
    if heads[:2] == (w("col_prompt"), w("col_position")):
        return [[pp["id"], str(d["position"]), w(f"kind_{d['kind']}"),
                 cell(inline_code(repr(d["ref_token_text"] or d["ref_token"]))),
                 cell(inline_code(repr(d["vllm_token_text"] or d["vllm_token"]))),
                 *[fmt(d[k]) for k in ("p_ref_ref_token", "p_ref_vllm_token", "margin", "p_vllm_ref_token",
                                       "p_vllm_vllm_token", "vllm_margin", "kl")]]
                for pp in doc["per_prompt"] for d in pp["divergences"]]
    if heads[0] == w("t_task"):
        ci = lambda x, v: f"{fmt(x[v])} [{fmt(x['ci95_low'])}, {fmt(x['ci95_high'])}]"  # noqa: E731
        return [[t["task"], t["metric"], str(t["items"]), ci(t["reference"], "score"), ci(t["candidate"], "score"),
                 ci(t["delta"], "value"), f"{t['only_reference_correct']} / {t['only_candidate_correct']}",
                 fmt(t["mcnemar_exact_p"])] for t in doc["tasks"]]
    if heads == (w("t_item"), w("t_target"), w("t_ref_answer"), w("t_vllm_answer")):
        # one table per task with discordant items, in task order; an answer is its text (multiple choice: the
        # chosen choice's), cut at 80 characters
        said = lambda a: inline_code(str(a["text"] if isinstance(a, dict) else a)[:80])  # noqa: E731
        return [[f"{d['task']}#{d['doc_id']}", inline_code(str(d["target"])),
                 said(d["reference"]["answer"]) + f" ({fmt(d['reference']['score'])})",
                 said(d["candidate"]["answer"]) + f" ({fmt(d['candidate']['score'])})"]
                for t in doc["tasks"] for d in t["discordant"][:20]]
    raise AssertionError(f"{heading}: a table this test does not know: {heads}")


SUBSECTION_STAGES = {"4.2": "deploy", "5.2": "latency", "5.3": "throughput", "5.4": "serve", "5.5": "latency", "6.1": "functional",
                     "6.2": "accuracy", "6.3": "tasks"}


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("name", RUNS)
def test_every_cell_of_sections_5_and_6_is_the_field_it_names(built, name, lang):
    """Each table of §4.2, §5.2–5.5 and §6.1–6.3, cell by cell, against the field of results/<stage>.json it shows,
    formatted as the report formats (a swapped column, a median shown as a mean or a wrong unit fails)."""
    run = built[name]
    text = read(run, lang)
    checked = 0
    for num, stage in SUBSECTION_STAGES.items():
        heading = next((h for h in re.findall(r"^### (.+)$", text, re.M) if h.startswith(num + " ")), None)
        if heading is None:
            assert stage == "tasks" and stored(run, "tasks") is None
            continue
        found = tables(section(text, heading))
        discordant = [t for t in found if t and tuple(t[0]) == tuple(S[k][lang] for k in (
            "t_item", "t_target", "t_ref_answer", "t_vllm_answer"))]
        for table in found:
            heads = tuple(table[0])
            stage_of = "deploy" if heads == (S["col_check"][lang], S["col_status"][lang], S["col_detail"][lang]) \
                else stage
            want = expected_table(run, stage_of, heads, lang, heading)
            shown = [[c.split(mark(lang))[0] for c in r.values()][:len(want[0]) if want else None] for r in table]
            if table in discordant:  # the per-task tables together hold the rows expected_table lists
                i = sum(len(t) for t in discordant[:discordant.index(table)])
                want = want[i:i + len(table)]
            assert shown == want, f"{heading}: {heads}"
            checked += sum(len(r) for r in shown)
    assert checked >= (350 if name == "golden" else 100)


def summary_figures(run: Path, metric_ids: tuple[str, ...], lang: str) -> str:
    """'label value unit; ...' from the fields the ids name (serve: the headline point's mean ± 95 % CI)."""
    from studykit.schema.metrics import dig, metric

    parts = []
    for mid in metric_ids:
        m = metric(mid)
        doc = stored(run, m.stage)
        if m.stage == "serve":
            st = dig(doc, m.path.rsplit(".", 1)[0])
            text = fmt(st["mean"]) + (f" ± {fmt(st['ci95_half_width'])}" if st.get("ci95_half_width") is not None
                                      else "")
        else:
            text = fmt(dig(doc, m.path))
        if text != "—":
            parts.append(f"{_label(m, lang)} {text} {m.unit}".rstrip())
    return "; ".join(parts) or "—"


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("name", RUNS)
def test_summary_cells_are_the_fields_their_ids_name(built, name, lang):
    """Every Summary row a stage declares, cell by cell: status from run.json, headline figures from the fields
    its metric ids name, check counts from its result. Rows standing for one check (by id) need the ids."""
    from studykit.report.sections import summary_rows

    run = built[name]
    state = json.loads((run / "run.json").read_text())
    claim, status_col, head_col, checks_col = (S[k][lang] for k in ("col_claim", "col_status", "col_headline",
                                                                      "col_checks"))
    shown = {r[claim]: r for r in tables(section(read(run, lang), SECTIONS[lang][0]))[0]}
    compared = 0
    for stage, row in summary_rows():
        if stage not in state["stages"] or (row.check is not None and LEGACY_GOLDEN):
            continue
        cells = shown[S[row.key][lang]]
        doc = stored(run, stage)
        checks = [c for c in (doc or {}).get("checks", []) if row.check is None or c["id"] == row.check]
        if row.check is None:
            assert cells[status_col] == status_word(state["stages"][stage]["status"], lang)
        if stage == "tasks":
            want = "; ".join(S["sum_task"][lang].format(task=t["task"], ref=fmt(t["reference"]["score"]),
                                                         vllm=fmt(t["candidate"]["score"]),
                                                         delta=fmt(t["delta"]["value"]), p=fmt(t["mcnemar_exact_p"]))
                             for t in doc["tasks"])
        elif checks and all(c["status"] == "not_run" for c in checks):
            want = "; ".join(c["detail"] if lang == "en" else (zh_detail(c["id"], c["detail"]) or c["detail"])
                             for c in checks)
        else:
            want = summary_figures(run, row.metrics, lang)
        assert cells[head_col] == want, (row.key, cells)
        counts = {k: sum(c["status"] == k for c in checks) for k in ("passed", "failed", "not_run")}
        assert cells[checks_col] == (S["sum_checks"][lang].format(**counts) if checks else "—"), (row.key, cells)
        compared += 1
    assert compared >= (6 if name == "golden" else 3)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_failing_check_mark_is_all_a_value_cell_adds(built, lang):
    """The cell comparison above reads a value cell up to its mark: the mark must carry nothing but check names."""
    run = built["golden-failed"]
    text = section(read(run, lang), SUBSECTIONS[lang][3])
    marked = [c for t in tables(text) for r in t for c in r.values() if mark(lang) in c]
    assert marked and all(re.fullmatch(r"[^\[]+" + re.escape(mark(lang)) + r".+\]", c) for c in marked)


def test_deploy_numbers_and_reply(built):
    run = built["golden"]
    deploy = result(run, "deploy")
    for lang in ("zh", "en"):
        text = read(run, lang)
        assert fmt(deploy["real_gate"]["ready_seconds"]) in text and fmt(deploy["dummy_gate"]["ready_seconds"]) in text
        assert deploy["smoke_chat"]["reply"] in text


def test_parameter_count_read_from_the_weight_headers(built):
    from studykit.report.modelinfo import safetensors_header

    run = built["golden"]
    want = sum(math.prod(t["shape"]) for f in (run / "model").glob("*.safetensors")
               for k, t in safetensors_header(f).items() if k != "__metadata__")
    assert f"{want:,}" in section(read(run, "en"), "1. Model introduction")
    summary = json.loads((run / "results" / "report.json").read_text()) if (run / "results" / "report.json").exists() \
        else None
    assert summary is None or summary["model"]["parameters"] == want


# ------------------------------------------------------------------ commands come from commands.jsonl

@pytest.mark.parametrize("name", RUNS)
def test_every_command_shown_was_recorded_and_appendix_lists_all_in_order(built, name):
    run = built[name]
    records = [json.loads(line) for line in (run / "commands.jsonl").read_text().splitlines() if line.strip()]
    recorded = {r["command"] for r in records}
    for lang in ("zh", "en"):
        text = read(run, lang)
        blocks = re.findall(r"^```bash\n(.*?)\n```", text, re.M | re.S)
        shown = [line for b in blocks for line in b.splitlines() if line and not line.startswith("#")]
        assert shown and all(line in recorded for line in shown), [s for s in shown if s not in recorded]
        appendix = section(text, next(h for h in re.findall(r"^## (.+)$", text, re.M) if h.startswith(SECTIONS[lang][-1])))
        listed = [line for line in re.findall(r"^```bash\n(.*?)\n```", appendix, re.M | re.S)[0].splitlines()
                  if not line.startswith("#")]
        # a Python step is journaled as a comment ("# python: ..."), listed with the other comment lines
        in_order = [r["command"] for r in sorted(records, key=lambda r: r["started_utc"])
                    if not r["command"].startswith("#")]
        assert listed == in_order


def test_quick_start_shows_the_exact_serve_command_and_request(built):
    run = built["golden"]
    records = [json.loads(line) for line in (run / "commands.jsonl").read_text().splitlines() if line.strip()]
    serve = next(r for r in records if r["stage"] == "deploy" and r["label"] == "real-gate")
    chat = next(r for r in records if r["label"] == "smoke chat")
    quick = section(read(run, "en"), "4. Quick start")
    assert f"```bash\n{serve['command']}\n```" in quick
    assert f"```bash\n{chat['command']}\n```" in quick
    assert "--max-num-seqs 16" in serve["command"]


# ------------------------------------------------------------------ failures, checks, conclusion

@pytest.mark.parametrize("lang", ["zh", "en"])
def test_failed_stage_is_shown_with_its_error(built, lang):
    run = built["golden-failed"]
    text = read(run, lang)
    err = json.loads((run / "run.json").read_text())["stages"]["latency"]["error"]
    lat = section(text, SUBSECTIONS[lang][0])
    assert ("本阶段(latency)失败" if lang == "zh" else "This stage (latency) failed") in lat
    assert err.splitlines()[0] in lat and "--no-such-flag" in lat  # the real error vLLM gave
    thr = section(text, SUBSECTIONS[lang][1])
    assert ("未请求" if lang == "zh" else "not requested") in thr or ("未运行" if lang == "zh" else "did not run") in thr
    concl = section(text, SECTIONS[lang][9])
    assert "latency" in concl and "accuracy" in concl
    assert f"| {S['status_failed'][lang]} |" in concl


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_failing_check_marked_next_to_its_number_and_listed(built, lang):
    run = built["golden-failed"]
    text = read(run, lang)
    acc = result(run, "accuracy")
    (bad,) = [c for c in acc["checks"] if c["status"] == "failed"]
    assert bad["metric"] == "accuracy.mean_kl"
    rows = [r for t in tables(section(text, SUBSECTIONS[lang][3])) for r in t if "指标" in r or "Metric" in r]
    cell = next(r for r in rows if r.get("指标" if lang == "zh" else "Metric") == metric_label("accuracy.mean_kl", lang))
    cell = cell["数值" if lang == "zh" else "Value"]
    assert cell == fmt(acc["teacher_forced"]["mean_kl"]) + f" [{S['x_marked'][lang].format(names=shown_check_label(bad, lang))}]"
    ok = next(r for r in rows if r.get("指标" if lang == "zh" else "Metric") == metric_label("accuracy.top1_agreement", lang))
    assert mark(lang) not in ok["数值" if lang == "zh" else "Value"]
    consistency = tables(section(text, SECTIONS[lang][10]))[0]
    all_checks = [c for s in ("latency", "serve", "accuracy") for c in (result(run, s) or {}).get("checks", [])]
    assert len(consistency) == len(all_checks)
    status_col = "状态" if lang == "zh" else "Status"
    failed_rows = [r for r in consistency if r[status_col] == S["status_failed"][lang]]
    assert {r["检查项" if lang == "zh" else "Check"] for r in failed_rows} == \
        {shown_check_name(c, lang) for c in all_checks if c["status"] == "failed"}


def test_conclusion_counts_passed_failed_and_not_run(built):
    for name in RUNS:
        en = section(read(built[name], "en"), "9. Conclusion")
        checks = [c for s in ("deploy", "latency", "throughput", "serve", "accuracy", "tasks", "functional")
                  if (built[name] / "results" / f"{s}.json").exists() for c in result(built[name], s)["checks"]]
        count = {k: sum(1 for c in checks if c["status"] == k) for k in ("passed", "failed", "not_run")}
        assert (f"{count['passed']} passed, {count['failed']} failed, {count['not_run']} not run "
                f"(of {len(checks)})") in en
    assert "out of the box" not in en and "开箱即用" not in read(built["golden"], "zh")
    assert "| 未运行 |" in read(built["golden"], "zh") and "| not run |" in read(built["golden"], "en")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_serve_repeats_show_mean_and_ci(built, lang):
    run = built["golden-failed"]
    (point,) = result(run, "serve")["points"]
    assert point["repeats"] == 2
    stat = point["metrics"]["mean_ttft_ms"]
    text = section(read(run, lang), SUBSECTIONS[lang][2])
    assert f"{fmt(stat['mean'])} ± {fmt(stat['ci95_half_width'])}" in text
    assert ("95% 置信区间" if lang == "zh" else "95 % confidence") in text


# ------------------------------------------------------------------ comparison

@pytest.mark.parametrize("lang", ["zh", "en"])
def test_reference_file_adds_reference_and_delta_columns(built, lang):
    """Every metric of the seed's reference file shows its reference and delta in the real run's report."""
    from studykit.schema.metrics import metric, value_of

    run = built["golden"]
    text = read(run, lang)
    ref = yaml.safe_load((ROOT / SEED_REF).read_text())["metrics"]
    ref_col, delta_col, note_col = ("参考值", "差异 (%)", "说明") if lang == "zh" else ("Reference", "Delta (%)", "Note")
    metric_col, value_col = ("指标", "数值") if lang == "zh" else ("Metric", "Value")
    sections = {"latency": "5.2", "throughput": "5.3", "serve": "5.4", "accuracy": "6.2"}

    def row_of(mid):
        num = sections[mid.split(".")[0]]
        heading = next(h for h in re.findall(r"^### (.+)$", text, re.M) if h.startswith(num + " "))
        return next(r for t in tables(section(text, heading)) if t and ref_col in t[0] for r in t
                    if r[metric_col] == metric_label(mid, lang))

    for mid, entry in ref.items():
        row = row_of(mid)
        r, tol = parse_number(row[ref_col])
        assert abs(r - entry["value"]) <= tol, (mid, row)
        m = metric(mid)
        ours = value_of(m, result(run, m.stage))
        assert row[delta_col] == f"{(ours - entry['value']) / abs(entry['value']) * 100:+.1f}", (mid, row)
        if entry.get("inconsistent"):
            assert row[note_col].startswith("⚠") and entry["inconsistent"] in row[note_col], (mid, row)
    prompt_row = row_of("throughput.total_prompt_tokens")
    assert parse_number(prompt_row[ref_col])[0] == 102400 and "⚠" in prompt_row[note_col]
    assert "seed-report-bitcpm4-0.5b-ascend.txt" in text
    assert "0.999998" in text  # listed among the numbers no study can measure, with the reason


def test_reference_run_directory_gives_zero_deltas(built, tmp_path):
    run = tmp_path / "run"
    golden_copy("golden", run)
    build_report(run, reference=str(golden_copy("golden", tmp_path / "reference")))
    en = section(read(run, "en"), "5.4 Serve")
    rows = [r for t in tables(en) if "Delta (%)" in t[0] for r in t]
    assert rows and all(r["Delta (%)"] in ("+0.0", "-0.0") for r in rows)
    assert len(rows) >= 10


def test_unreadable_reference_still_writes_the_report_and_says_why(tmp_path):
    run = tmp_path / "run"
    golden_copy("golden-failed", run)
    summary = build_report(run, reference=str(tmp_path / "missing.yaml"))
    assert "missing.yaml" in summary["reference"]["error"]
    assert "missing.yaml" in read(run, "en") and "allowed: a run directory" in read(run, "en")


@pytest.mark.parametrize("content,needle", [
    ("metrics: [1, 2]", "'metrics' mapping"),
    ("metrics: {serve.mean_ttft_ms: fast}", "serve.mean_ttft_ms"),
    ("metrics: {mean_ttft_ms: 3}", "unknown metric id 'mean_ttft_ms'"),
    ("metrics: {latency.percentiles.50: 1.5}", "unknown metric id 'latency.percentiles.50'"),
    ("metrics: {serve.mean_ttft_ms: {value: 1, unit: s}}", "measures it in 'ms'"),
    ("metrics: {serve.mean_ttft_ms: 1}\nnot_measurable: {x: ''}", "not_measurable"),
])
def test_bad_reference_file_names_the_problem(tmp_path, content, needle):
    p = tmp_path / "ref.yaml"
    p.write_text(content)
    with pytest.raises(ReferenceError, match=re.escape(needle)):
        load_reference(str(p))


# ------------------------------------------------------------------ robustness and HTML

def test_results_outside_the_contract_are_named_not_guessed(tmp_path):
    run = tmp_path / "run"
    golden_copy("golden", run)
    serve = result(run, "serve")
    serve["mean_ttft_ms"] = 5.0  # a key no stage writes: the report says so instead of guessing
    (run / "results" / "serve.json").write_text(json.dumps(serve))
    (run / "results" / "latency.json").write_text("{ half a file")
    (run / "results" / "environment.json").unlink()
    (run / "commands.jsonl").write_text((run / "commands.jsonl").read_text() + '{"cut short')
    summary = build_report(run)
    en = read(run, "en")
    assert "latency.json is unreadable" in en
    assert "results/serve.json does not fit the results contract" in en and "mean_ttft_ms" in en
    assert "No results/environment.json" in en
    assert summary["files"]["report.html"]
    # neither stage is guessed at: shown as unreadable, none of its numbers in §5, its status not "passed"
    for stage, heading in (("latency", "5.2 Latency"), ("serve", "5.4 Serve")):
        body = section(en, heading)
        assert S["stage_unreadable"]["en"].format(stage=stage) in body
        assert not [t for t in tables(body) if "Metric" in t[0]]
        assert summary["stage_status"][stage] == "unreadable"
    rows = {r["Claim"]: r for r in tables(section(en, "Summary"))[0]}
    assert rows[S["sum_serve"]["en"]]["Status"] == S["status_unreadable"]["en"]
    assert rows[S["sum_serve"]["en"]]["Headline figures"] == "—"


def test_html_stands_alone_with_charts_inlined(built):
    run = built["golden"]
    html = (run / "report.html").read_text()
    charts = sorted((run / "charts").glob("*.png"))
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(srcs) == 2 * len(charts)  # both languages
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert '<section class="lang" id="lang-zh"' in html and '<section class="lang" id="lang-en"' in html
    assert "<table>" in html and "<script" not in html


def test_language_selection(tmp_path):
    run = tmp_path / "run"
    golden_copy("golden", run)
    build_report(run, languages=["en"])
    assert (run / "report.en.md").exists() and not (run / "report.zh.md").exists()
    with pytest.raises(ValueError, match="allowed: zh, en"):
        build_report(run, languages=["fr"])


def test_report_notebook_by_hand_finds_the_newest_run(tmp_path, monkeypatch):
    from conftest import DEFAULT_PARAMS
    from studykit.stages.report.stage import newest_run_dir

    monkeypatch.setenv("STUDYKIT_OUTPUTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no run directory of study 'smollm2-135m-cpu'"):
        newest_run_dir(str(DEFAULT_PARAMS))
    for stamp in ("20261125T010000Z", "20261125T020000Z", "20261124T230000Z"):
        (tmp_path / "smollm2-135m-cpu" / stamp).mkdir(parents=True)
        (tmp_path / "smollm2-135m-cpu" / stamp / "run.json").write_text("{}")
    (tmp_path / "smollm2-135m-cpu" / "20261125T030000Z").mkdir()  # no run.json: not a run
    assert newest_run_dir(str(DEFAULT_PARAMS)).name == "20261125T020000Z"


def test_parallel_layout_shows_the_sizes_and_each_ranks_binding(tmp_path):
    run = tmp_path / "run"
    golden_copy("golden", run)
    study = yaml.safe_load((run / "params.yaml").read_text())
    study["server"]["tensor_parallel_size"] = 2
    (run / "params.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    records = [json.loads(line) for line in (run / "commands.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["is_vllm"])
    first["env"]["VLLM_CPU_OMP_THREADS_BIND"] = "0|1"
    (run / "commands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    build_report(run, languages=["en"])
    layout = section(read(run, "en"), "2.3 Parallel layout")
    assert "| TP × PP × DP | 2 × 1 × 1 |" in layout and "| VLLM_CPU_OMP_THREADS_BIND | 0\\|1 |" in layout
    assert "| 0 | 0 | 0 | 0 | 0 |" in layout and "| 1 | 0 | 0 | 1 | 1 |" in layout


# ------------------------------------------------------------------ zh structure and check texts

@pytest.mark.parametrize("lang,want", [("zh", ZH_HEADINGS), ("en", EN_HEADINGS)])
def test_headings_in_order(built, lang, want):
    """The seed's structure (zh-report-terms.md): 4.2 / 6.1 apart, 7.1–7.3, 8.1, appendices A and B unnumbered."""
    text = read(built["golden"], lang)
    assert re.findall(r"^#{2,3} .+$", text, re.M) == want


def test_titles_say_the_platform(tmp_path):
    run = golden_copy("golden", tmp_path / "run")
    build_report(run)
    model = yaml.safe_load((run / "params.yaml").read_text())["model"]["id"]
    assert read(run, "zh").splitlines()[0] == f"# {model} vLLM CPU 测评报告"
    assert read(run, "en").splitlines()[0] == f"# {model} vLLM CPU evaluation report"
    study = yaml.safe_load((run / "params.yaml").read_text())
    study["platform"] = "npu"
    (run / "params.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    build_report(run)
    assert read(run, "zh").splitlines()[0] == f"# {model} 昇腾 NPU 适配测评报告"


EMOJI = re.compile("[\u2705\u274c\u2714\u2716\u2b50\u23f0-\u23fa\U0001f300-\U0001faff]")


@pytest.mark.parametrize("name", RUNS)
def test_no_emoji_anywhere_and_status_in_colour(built, name):
    """Status is a word (the Markdown) and a coloured word (the HTML), never an emoji a host may lack."""
    for lang in ("zh", "en"):
        assert not EMOJI.findall(read(built[name], lang)), lang
    html = (built[name] / "report.html").read_text()
    assert not EMOJI.findall(html)
    assert '<td><span style="color:#1a7f37">通过</span></td>' in html
    assert '<td><span style="color:#1a7f37">passed</span></td>' in html
    if name == "golden-failed":
        assert '<td><span style="color:#cf222e">失败</span></td>' in html
        assert '<strong>结论: <span style="color:#cf222e">未通过</span></strong>' in html
    else:
        assert '<strong>结论: <span style="color:#1a7f37">通过</span></strong>' in html


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_conclusion_opens_with_a_one_line_verdict(built, lang):
    for name, word in (("golden", "verdict_passed"), ("golden-failed", "verdict_failed")):
        body = section(read(built[name], lang), SECTIONS[lang][9]).strip()
        assert body.splitlines()[0].startswith(f"**{S['c_verdict'][lang]}: {S[word][lang]}** — ")


def recomputed_checks(run) -> dict[str, list]:
    """Each stage's checks as its checks.py computes them today from the stored result and params (with ids)."""
    from studykit import stages
    from studykit.report.model import load_run

    out = {}
    for st in load_run(run).stages.values():
        if st.result is not None and stages.has_part(st.name, "checks"):
            p = stages.params_model(st.name).model_validate(load_run(run).stage_params(st.name))
            out[st.name] = stages.module(st.name, "checks").checks(p, st.result)
    return out


@pytest.fixture(scope="module")
def with_ids(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The golden runs with the checks their stages compute today (real ids) written into their results."""
    out = {}
    for name in RUNS:
        run = golden_copy(name, tmp_path_factory.mktemp(f"ids-{name}") / name)
        computed = recomputed_checks(run)
        for stage, checks in computed.items():
            doc = result(run, stage)
            doc["checks"] = [c.model_dump() for c in checks]
            (run / "results" / f"{stage}.json").write_text(json.dumps(doc, ensure_ascii=False))
        build_report(run)
        out[name] = (run, computed)
    return out


def literal_check_ids() -> set[str]:
    """The ids the stages' checks.py spell out: string constants `<that stage>.<what>` that are not metric ids."""
    import ast

    from studykit.schema.metrics import by_id

    found = set()
    for path in (ROOT / "lib" / "studykit" / "stages").glob("*/checks.py"):
        stage = path.parent.name
        for node in ast.walk(ast.parse(path.read_text())):
            # where the stages write an id: check(id, ...) / not_run(id, ...), `cid, name = id, ...`,
            # (id, name, metric) tuples, {id: name} dicts
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("check", "not_run"):
                candidates = node.args[:1]
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "energy_per_token"
                  and isinstance(node.args[0], ast.Constant)):
                # studykit.checks.energy_per_token(stage, ...) writes the id `<stage>.energy_per_token`
                candidates = [ast.Constant(f"{node.args[0].value}.energy_per_token")]
            elif isinstance(node, ast.Tuple):
                candidates = node.elts[:1]
            elif isinstance(node, ast.Dict):
                candidates = node.keys
            else:
                continue
            found |= {c.value for c in candidates if isinstance(c, ast.Constant) and isinstance(c.value, str)
                      and re.fullmatch(rf"{stage}\.[a-z0-9_]+", c.value) and c.value not in by_id()}
    return found


def test_every_check_id_the_stages_produce_has_zh_and_en_text(with_ids):
    """Ids from the golden runs' checks recomputed, the published-table checks, and the ids spelled out in the
    stages' checks.py: each has a zh and an en name; and every entry of the table is an id some stage produces."""
    from studykit.report.check_text import CHECKS
    from studykit.stages.throughput.checks import seed_table_checks

    produced = {c.id for _, computed in with_ids.values() for checks in computed.values() for c in checks}
    produced |= {c.id for c in seed_table_checks(31.67, 36479.94, 4053.33, 102400, 12800, 100, 128, 128)}
    produced |= literal_check_ids()
    assert {"deploy.dummy_gate", "serve.parse_mean_ttft", "throughput.total_rate_agreement",
            "functional.graph_vs_eager"} <= produced
    assert sorted(produced - set(CHECKS)) == [], sorted(produced - set(CHECKS))
    assert sorted(set(CHECKS) - produced) == [], sorted(set(CHECKS) - produced)
    for cid, text in CHECKS.items():
        assert text.zh and text.en and text.zh != text.en, cid
        assert re.search(r"[\u4e00-\u9fff]", text.zh), cid


def test_every_detail_of_the_golden_runs_has_a_zh_template(with_ids):
    """Each recorded detail of a fixed shape is matched by its id's zh template (a template that no longer fits
    the stage's words shows here, not as an English lead-in in a report)."""
    from studykit.report.check_text import zh_detail

    unmatched = [(c.id, c.detail) for _, computed in with_ids.values() for checks in computed.values()
                 for c in checks if c.detail and zh_detail(c.id, c.detail) is None]
    assert unmatched == [], "\n".join(f"{i}: {d}" for i, d in unmatched)


@pytest.mark.parametrize("name", RUNS)
def test_zh_report_shows_no_english_check_name(with_ids, name):
    from studykit.report.check_text import CHECKS

    run, computed = with_ids[name]
    zh, en = (read(run, lang).replace("\\|", "|") for lang in ("zh", "en"))  # as a reader sees a table cell
    assert computed
    for stage, checks in computed.items():
        for c in checks:
            assert c.name not in zh and CHECKS[c.id].en not in zh, c.id
            if stage != "report":  # the report's own checks are made after it is written
                assert CHECKS[c.id].zh in zh and CHECKS[c.id].en in en, c.id
    assert "原文:" not in zh and "未登记" not in zh


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_unknown_check_id_falls_back_visibly(tmp_path, lang):
    run = golden_copy("golden", tmp_path / "run")
    doc = result(run, "latency")
    doc["checks"] = [{"id": "latency.brand_new", "name": "a new check", "status": "failed", "detail": "it broke",
                      "subject": None, "metric": None}]
    (run / "results" / "latency.json").write_text(json.dumps(doc))
    build_report(run, languages=[lang])
    rows = [r for t in tables(section(read(run, lang), SECTIONS[lang][10])) for r in t
            if "latency.brand_new" in r.get(S["col_check"][lang], "")]
    (row,) = rows
    if lang == "zh":
        assert row["检查项"] == "⚠ 未登记的检查项 latency.brand_new" and row["说明"] == "原文:a new check: it broke"
    else:
        assert row["Check"] == "⚠ a new check (unregistered check id latency.brand_new)" and row["Detail"] == "it broke"


def test_zh_details_fill_templates_from_the_recorded_words():
    """Templates against details written by the generic helpers (independent of any run)."""
    from studykit.checks import argv_has, completed_all, token_totals
    from studykit.report.check_text import check_detail, check_label

    (prompt, output, total) = token_totals("throughput", 20, 32, 32, prompt_tokens=640, output_tokens=600,
                                           total_tokens=1280, where="vLLM printed: ")
    assert check_detail(prompt, "zh") == "20 条 × 32 token = 640,结果为 640"
    assert check_detail(output, "zh") == "20 条 × 32 token = 640,结果为 600"
    assert check_label(prompt, "zh") == "prompt token 总数 = 请求数 × 输入长度 (vLLM 打印输出)"
    assert check_detail(completed_all("serve", 20, 19, 1, where="rate-4: "), "zh") == "完成 19/20,失败 1"
    bad = argv_has("latency", ["--input-len", "8"], {"--input-len": 32})
    assert check_detail(bad, "zh") == "不一致:{'--input-len': '8'}" and check_detail(bad, "en") == bad.detail


def test_reference_texts_in_both_languages(tmp_path):
    """A reference's title, source, notes and reasons may be {zh, en}: each report shows its own language."""
    ref = tmp_path / "ref.yaml"
    ref.write_text(yaml.safe_dump({
        "title": {"zh": "种子报告", "en": "Seed report"}, "source": {"zh": "种子 §5.4", "en": "seed §5.4"},
        "metrics": {"serve.mean_ttft_ms": {"value": 878.21, "note": {"zh": "§5.4 平均 TTFT", "en": "§5.4 Mean TTFT"}}},
        "not_measurable": {"§5.2 88.3 tokens/s": {"zh": "不是 vllm bench latency 的输出", "en": "not a bench output"}},
    }, allow_unicode=True))
    run = golden_copy("golden", tmp_path / "run")
    build_report(run, reference=str(ref))
    zh, en = read(run, "zh"), read(run, "en")
    assert "种子报告" in zh and "种子 §5.4" in zh and "§5.4 平均 TTFT" in zh and "不是 vllm bench latency 的输出" in zh
    assert "Seed report" in en and "§5.4 Mean TTFT" in en and "not a bench output" in en
    assert "Seed report" not in zh and "种子报告" not in en
    ref.write_text("metrics: {serve.mean_ttft_ms: {value: 1, note: {zh: only}}}")
    with pytest.raises(ReferenceError, match="note must be a string or"):
        load_reference(str(ref))
