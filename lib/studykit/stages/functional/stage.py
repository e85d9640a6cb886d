"""Functional claims measured on a running server, not asserted: prefix caching (vLLM's own hit counters),
chunked prefill (a prompt longer than the per-step token budget completes) and, when asked for, graph mode against
eager (the same greedy tokens). Tensor parallelism and multi-modal input are not exercised: `not_applicable`
records from the study and config.json why they do not apply, or that they are configured / present but not
checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

from studykit.engine import cmdline
from studykit.engine.engine_config import read_engine_config
from studykit.engine.server import http_get, http_post_json
from studykit.plan import Step, base_url, find
from studykit.stages.deploy.stage import curl_command
from studykit.stages.functional.params import FunctionalParams
from studykit.stages.functional.result import FunctionalResult

_METRIC = re.compile(r"^(vllm:[a-z_]+)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def batched_tokens_budget(study) -> tuple[int, list[str]]:
    """The chunked-prefill check's per-step token budget, and the flag the server needs for it (none when the
    study already sets --max-num-batched-tokens)."""
    if study.server.max_num_batched_tokens:
        return study.server.max_num_batched_tokens, []
    budget = study.functional.max_num_batched_tokens
    return budget, ["--max-num-batched-tokens", str(budget)]


def plan(study, model_dir: Path, run_dir, port) -> list[Step]:
    p, url = study.functional, base_url(study.server.host, port)
    budget, extra = batched_tokens_budget(study)
    steps = [Step("functional", "functional", "server", cmdline.serve_argv(study, model_dir, port, extra=extra)),
             Step("functional", "prefix-cache request", "http", text=(
                 f"# {p.prefix_requests} sequential POST {url}/v1/completions sharing a {p.prefix_tokens}-token "
                 "prefix; GET /metrics before and after (vllm:prefix_cache_hits_total, queries_total)")),
             Step("functional", "chunked-prefill request", "http", text=(
                 f"# POST {url}/v1/completions with a {budget * 2 + 17}-token prompt, budget {budget} per step"))]
    if p.graph_vs_eager:
        other = "functional-graph" if study.enforce_eager else "functional-eager"
        steps.append(Step("functional", other, "server", cmdline.serve_argv(
            study, model_dir, port, enforce_eager=not study.enforce_eager, extra=extra)))
    return steps


def read_metrics(base_url: str) -> dict:
    """Prometheus text → {name: value summed over label sets}, plus labels of cache_config_info."""
    status, body = http_get(base_url + "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"GET /metrics answered HTTP {status}")
    values, cache_config = {}, {}
    for line in body.decode().splitlines():
        m = _METRIC.match(line.strip())
        if not m:
            continue
        name, labels, value = m.groups()
        if name == "vllm:cache_config_info" and labels:
            cache_config = dict(_LABEL.findall(labels))
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return {"values": values, "cache_config": cache_config}


def engine_config_flags(log_path: Path) -> dict:
    """enable_prefix_caching / enable_chunked_prefill as the engine printed them at start."""
    text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    found = {}
    for key in ("enable_prefix_caching", "enable_chunked_prefill"):
        m = re.search(rf"{key}=(True|False)", text)
        found[key] = None if m is None else m.group(1) == "True"
    return found


def complete(base_url: str, model: str, prompt_ids: list[int], max_tokens: int, commands=None, label="") -> dict:
    payload = {"model": model, "prompt": prompt_ids, "max_tokens": max_tokens, "temperature": 0,
               "ignore_eos": True, "return_token_ids": True}
    if commands is not None and label:
        commands.note(label, curl_command(base_url + "/v1/completions", payload))
    answer = http_post_json(base_url + "/v1/completions", payload)
    return {"tokens": answer["choices"][0]["token_ids"], "usage": answer.get("usage"),
            "finish_reason": answer["choices"][0]["finish_reason"]}


def filler_ids(tokenizer, n: int, salt: str = "") -> list[int]:
    text = (salt + " The quick brown fox jumps over the lazy dog near the quiet river bank. ") * (n // 8 + 4)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids[:n]]


def prefix_cache_check(srv, model: str, tokenizer, prefix_tokens: int, requests: int, commands=None) -> dict:
    """Sequential requests sharing a prefix; hits and queries are vLLM's own counters (in tokens)."""
    before = read_metrics(srv.base_url)
    block = int(before["cache_config"].get("block_size", 0) or 0)
    enabled = before["cache_config"].get("enable_prefix_caching")
    prefix = filler_ids(tokenizer, prefix_tokens)
    for i in range(requests):
        suffix = filler_ids(tokenizer, 8, salt=f"request {i}:")
        complete(srv.base_url, model, prefix + suffix, 1, commands, "prefix-cache request" if i == 0 else "")
    after = read_metrics(srv.base_url)
    hits = after["values"].get("vllm:prefix_cache_hits_total", 0) - before["values"].get("vllm:prefix_cache_hits_total", 0)
    queries = after["values"].get("vllm:prefix_cache_queries_total", 0) - before["values"].get("vllm:prefix_cache_queries_total", 0)
    # Only whole KV blocks are shared, so the cacheable part of the prefix is rounded down to a block.
    full_blocks = prefix_tokens // block if block else None
    expected = (requests - 1) * full_blocks * block if block else None
    why = None
    if hits == 0:
        if enabled in ("False", "false"):
            why = "prefix caching is disabled in the server's cache config"
        elif block and prefix_tokens < block:
            why = (f"the shared prefix ({prefix_tokens} tokens) is shorter than one KV block ({block} tokens); "
                   "vLLM caches whole blocks only")
        else:
            why = "no hits although the prefix spans whole blocks"
    return {"enabled": enabled, "block_size": block or None, "prefix_tokens": prefix_tokens,
            "prefix_full_blocks": full_blocks, "requests": requests, "hit_tokens": hits, "query_tokens": queries,
            "hit_rate": hits / queries if queries else None, "expected_hit_tokens": expected,
            "working": hits > 0, "why_no_hits": why}


def chunked_prefill_check(srv, model: str, tokenizer, max_num_batched_tokens: int, log_flags: dict,
                          commands=None) -> dict:
    """One prompt of 2 x budget + 17 tokens, 4 tokens out, on an otherwise idle server; vLLM's own histogram of
    tokens per engine step (vllm:iteration_tokens_total, its _count and _sum) says how many steps that took."""
    n, out_tokens = max_num_batched_tokens * 2 + 17, 4
    ids = filler_ids(tokenizer, n, salt="long prompt")
    before = read_metrics(srv.base_url)["values"]
    out = complete(srv.base_url, model, ids, out_tokens, commands, "chunked-prefill request")
    after = read_metrics(srv.base_url)["values"]
    steps = tokens = None
    if "vllm:iteration_tokens_total_count" in after:
        steps = int(after["vllm:iteration_tokens_total_count"] - before.get("vllm:iteration_tokens_total_count", 0))
        tokens = int(after["vllm:iteration_tokens_total_sum"] - before.get("vllm:iteration_tokens_total_sum", 0))
    return {"enabled": log_flags.get("enable_chunked_prefill"), "max_num_batched_tokens": max_num_batched_tokens,
            "prompt_tokens": len(ids), "completed": len(out["tokens"]) == out_tokens, "usage": out["usage"],
            "output_tokens": out_tokens, "engine_steps": steps, "engine_step_tokens": tokens,
            "prefill_steps": None if steps is None else steps - (out_tokens - 1)}


def not_applicable(study, model_dir: Path) -> dict:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    tp = study.server.tensor_parallel_size
    mm_keys = sorted(k for k in config if k in ("vision_config", "audio_config", "visual", "mm_projector_type"))
    return {
        "tensor_parallel": ({"status": "not applicable", "reason": f"tensor_parallel_size is {tp}: one device"}
                            if tp == 1 else {"status": "configured", "tensor_parallel_size": tp}),
        "multi_modal": ({"status": "not applicable",
                         "reason": f"config.json has no vision/audio config (architectures {config.get('architectures')})"}
                        if not mm_keys else {"status": "not checked", "reason": f"multi-modal keys {mm_keys} present"}),
    }


GRAPH_PROBE = "Write a haiku about the sea."


def graph_vs_eager_not_applicable(study) -> dict:
    return {"status": "not applicable",
            "reason": ("graph compilation on CPU takes minutes; set functional.graph_vs_eager: true to compare"
                       if study.platform == "cpu" else "functional.graph_vs_eager is false")}


def run(ctx, p: FunctionalParams) -> FunctionalResult:
    """Prefix caching and chunked prefill on one server (plus a greedy probe), then the probe again on a server of
    the other graph mode when graph_vs_eager is set; what was measured is kept if a step fails (ctx.keep)."""
    from studykit.stages.accuracy.stage import load_tokenizer

    study = ctx.study
    data: dict = {"params": p.model_dump(mode="json"), "server": "functional"}
    with ctx.keep(data):
        data["not_applicable"] = not_applicable(study, ctx.model_dir)
        tokenizer = load_tokenizer(ctx.model_dir, study.model.trust_remote_code)
        name = study.model.name_served
        budget, _ = batched_tokens_budget(study)
        steps = ctx.plan()
        probe = tokenizer(GRAPH_PROBE)["input_ids"]
        with ctx.server_for(find(steps, "functional")) as srv:
            flags = engine_config_flags(srv.log_path)
            data["engine_flags"] = flags
            logged = read_engine_config(srv.log_path)
            data["engine_args"] = {"command": srv.command, "logged": logged.get("non_default_args"),
                                   "vllm_version": logged.get("version")}
            data["prefix_caching"] = prefix_cache_check(srv, name, tokenizer, p.prefix_tokens, p.prefix_requests,
                                                        ctx.commands)
            data["chunked_prefill"] = chunked_prefill_check(srv, name, tokenizer, budget, flags, ctx.commands)
            base_tokens = complete(srv.base_url, name, probe, 16)["tokens"]
        other = next((s for s in steps if s.label in ("functional-graph", "functional-eager")), None)
        if other is None:
            data["graph_vs_eager"] = graph_vs_eager_not_applicable(study)
        else:
            with ctx.server_for(other) as srv:
                other_tokens = complete(srv.base_url, name, probe, 16)["tokens"]
            # the base server runs the study's mode, the other one the opposite
            graph, eager = (other_tokens, base_tokens) if other.label == "functional-graph" else (base_tokens,
                                                                                                   other_tokens)
            data["graph_vs_eager"] = {"status": "measured", "identical": graph == eager, "eager_tokens": eager,
                                      "graph_tokens": graph}
    return ctx.result(data)


def features_frame(result: FunctionalResult):
    """Prefix caching and chunked prefill as measured, side by side (one row per field)."""
    import pandas as pd

    cols = {label: (part.model_dump() if part else {}) for label, part in
            (("prefix caching", result.prefix_caching), ("chunked prefill", result.chunked_prefill))}
    return pd.DataFrame({label: pd.Series(values, dtype=object) for label, values in cols.items()})
