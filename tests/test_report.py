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
import yaml

from studykit.report import build_report
from studykit.report.blocks import metric_label as _label
from studykit.report.i18n import S
from studykit.report.mdtools import fmt
from studykit.report.reference import ReferenceError, load_reference

DATA = Path(__file__).parent / "data" / "runs"
RUNS = ("golden", "golden-failed")
SEED_REF = "params/reference/seed-bitcpm4-0.5b-ascend.yaml"
ROOT = Path(__file__).resolve().parents[1]

SECTIONS = {
    "zh": ["摘要", "1. 模型简介", "2. 环境信息", "3. 模型权重获取", "4. 快速启动", "5. 性能测评", "6. 精度与功能验证",
           "7. 关键适配说明", "8. 已知问题与注意事项", "9. 结论", "10. 一致性检查", "附录"],
    "en": ["Summary", "1. Model introduction", "2. Environment", "3. Weight acquisition", "4. Quick start", "5. Performance",
           "6. Accuracy and functional checks", "7. Adaptation notes", "8. Known issues", "9. Conclusion",
           "10. Consistency checks", "Appendix"],
}
SUBSECTIONS = {"zh": ["5.2 Latency 测试", "5.3 Throughput 测试", "5.4 Serve 测试", "6.2 精度对标测试"],
               "en": ["5.2 Latency", "5.3 Throughput", "5.4 Serve", "6.2 Accuracy comparison"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Each golden run copied and reported on once, with the reference its params name (the seed's numbers)."""
    out = {}
    for name in RUNS:
        d = tmp_path_factory.mktemp(name) / name
        shutil.copytree(DATA / name, d)
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


def json_numbers(data) -> list[float]:
    if isinstance(data, bool):
        return []
    if isinstance(data, (int, float)):
        return [float(data)]
    if isinstance(data, dict):
        return [x for v in data.values() for x in json_numbers(v)]
    if isinstance(data, list):
        return [x for v in data for x in json_numbers(v)]
    return []


def value_cells(table: list[dict], lang: str) -> list[str]:
    """Cells holding this run's numbers: the value column, or every column of a sweep table."""
    value_col = "数值" if lang == "zh" else "Value"
    ref_cols = {"参考值", "差异 (%)", "Reference", "Delta (%)", "指标", "Metric", "单位", "Unit", "测试点", "Point",
                "说明", "Detail", "Note", "检查项", "Check"}  # words, and a check's detail text, are not the JSON's
    if value_col in table[0]:
        return [r[value_col] for r in table]
    return [c for r in table for k, c in r.items() if k not in ref_cols]


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
    graph = next(r for r in rows if "graph" in r[claim].lower() or "图模式" in r[claim])
    assert ("未运行" if lang == "zh" else "not run") in graph["状态" if lang == "zh" else "Status"]


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


# ------------------------------------------------------------------ numbers come from the JSON

PERF = [("latency", "5.2"), ("throughput", "5.3"), ("serve", "5.4"), ("accuracy", "6.2"), ("functional", "6.1"),
        ("tasks", "6.3")]


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("name", RUNS)
def test_every_table_number_equals_the_json(built, name, lang):
    run = built[name]
    text = read(run, lang)
    checked = 0
    for stage, num in PERF:
        heading = next((h for h in re.findall(r"^### (.+)$", text, re.M) if h.startswith(num + " ")), None)
        if heading is None:
            assert stage == "tasks" and not (run / "results" / "tasks.json").exists()
            continue
        body = section(text, heading)
        path = run / "results" / f"{stage}.json"
        numbers = json_numbers(json.loads(path.read_text())) if path.exists() else []
        params = yaml.safe_load((run / "params.yaml").read_text()).get(stage) or {}
        allowed = numbers + json_numbers(params)  # the configuration table shows the stage's params
        for table in tables(body):
            for c in value_cells(table, lang):
                parsed = parse_number(c)
                if parsed is None:
                    continue
                v, tol = parsed
                assert any(abs(v - n) <= tol for n in allowed), f"{stage}: {c!r} is not a number of {path.name}"
                checked += 1
    assert checked >= (40 if name == "golden" else 15)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_named_rows_show_their_json_value(built, lang):
    from studykit.schema.metrics import metric, value_of

    run = built["golden"]
    text = read(run, lang)
    for num, mid in [("5.2", "latency.avg_latency"), ("5.2", "latency.p50_latency_s"),
                     ("5.2", "latency.p90_latency_s"), ("5.3", "throughput.total_prompt_tokens"),
                     ("5.3", "throughput.tokens_per_second"), ("5.4", "serve.mean_ttft_ms"),
                     ("5.4", "serve.p99_tpot_ms"), ("6.2", "accuracy.token_agreement")]:
        heading = next(h for h in re.findall(r"^### (.+)$", text, re.M) if h.startswith(num + " "))
        rows = [r for t in tables(section(text, heading)) for r in t]
        row = next(r for r in rows if r.get("指标" if lang == "zh" else "Metric") == metric_label(mid, lang))
        m = metric(mid)
        want = value_of(m, result(run, m.stage))
        v, tol = parse_number(row["数值" if lang == "zh" else "Value"])
        assert abs(v - want) <= tol, (mid, row, want)


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
    assert ("❌ 失败" if lang == "zh" else "❌ failed") in concl


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
    assert cell.startswith(fmt(acc["teacher_forced"]["mean_kl"])) and "❌" in cell and bad["name"] in cell
    ok = next(r for r in rows if r.get("指标" if lang == "zh" else "Metric") == metric_label("accuracy.top1_agreement", lang))
    assert "❌" not in ok["数值" if lang == "zh" else "Value"]
    consistency = tables(section(text, SECTIONS[lang][10]))[0]
    all_checks = [c for s in ("latency", "serve", "accuracy") for c in (result(run, s) or {}).get("checks", [])]
    assert len(consistency) == len(all_checks)
    status_col = "状态" if lang == "zh" else "Status"
    failed_rows = [r for r in consistency if "❌" in r[status_col]]
    assert {r["检查项" if lang == "zh" else "Check"] for r in failed_rows} == \
        {c["name"] for c in all_checks if c["status"] == "failed"}


def test_conclusion_counts_passed_failed_and_not_run(built):
    for name in RUNS:
        en = section(read(built[name], "en"), "9. Conclusion")
        checks = [c for s in ("deploy", "latency", "throughput", "serve", "accuracy", "tasks", "functional")
                  if (built[name] / "results" / f"{s}.json").exists() for c in result(built[name], s)["checks"]]
        count = {k: sum(1 for c in checks if c["status"] == k) for k in ("passed", "failed", "not_run")}
        assert (f"{count['passed']} passed, {count['failed']} failed, {count['not_run']} not run "
                f"(of {len(checks)})") in en
    assert "out of the box" not in en and "开箱即用" not in read(built["golden"], "zh")
    # the default study's functional stage does not compare graph and eager: a not-run check, with its reason
    fn = result(built["golden"], "functional")
    (ge,) = [c for c in fn["checks"] if "graph" in c["name"]]
    assert ge["status"] == "not_run" and ge["detail"]
    assert ("— 未运行" in read(built["golden"], "zh")) and ("— not run" in read(built["golden"], "en"))


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
    shutil.copytree(DATA / "golden", run)
    build_report(run, reference=str(DATA / "golden"))
    en = section(read(run, "en"), "5.4 Serve")
    rows = [r for t in tables(en) if "Delta (%)" in t[0] for r in t]
    assert rows and all(r["Delta (%)"] in ("+0.0", "-0.0") for r in rows)
    assert len(rows) >= 10


def test_unreadable_reference_still_writes_the_report_and_says_why(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(DATA / "golden-failed", run)
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
    shutil.copytree(DATA / "golden", run)
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
    shutil.copytree(DATA / "golden", run)
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
    shutil.copytree(DATA / "golden", run)
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
