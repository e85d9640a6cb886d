"""Why decode runs at the speed it does: per decode step, the time inside the model's forward against the time
outside it (scheduler, sampler, Python, input prep, waiting), from vLLM's own torch profiler; and what a token
costs in energy where the host exposes power.

The server is the study's `vllm serve` plus `--profiler-config` (a different command, so its own server, never a
shared one) and VLLM_CUSTOM_SCOPES_FOR_PROFILING=1 (vLLM then marks its forward with a profiler scope, which is
what "inside the model" is measured by). For each concurrency of the params: one window of streamed requests
without the profiler (its ms per output token is the reference, and its energy is the one reported), then the
same window between /start_profile and /stop_profile, whose trace gives the split. The profiler's overhead is the
ratio of the two windows' ms per output token.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from studykit.energy import EnergyError, RaplWindow, rapl_not_run, window_energy
from studykit.engine import cmdline
from studykit.engine.telemetry import Telemetry
from studykit.evidence.rundir import RunLayout, read_json
from studykit.plan import Step, base_url
from studykit.stages.benchtools import telemetry_charts
from studykit.stages.profile.params import ProfileParams
from studykit.stages.profile.result import ProfileResult
from studykit.stages.profile.trace import TraceError, parse_trace, trace_files

SCOPES_ENV = {"VLLM_CUSTOM_SCOPES_FOR_PROFILING": "1"}
REQUEST_TIMEOUT_S = 600.0
TRACE_WAIT_S = 120.0
IDLE_SECONDS = 3.0
PROMPT_BASE_ID = 1000  # prompt token ids from here on: clear of the special tokens at the start of a vocabulary


def profiler_config(raw_dir: str | Path) -> dict[str, Any]:
    """vLLM's ProfilerConfig (vllm/config/profiler.py) as `--profiler-config` JSON. Without Python stacks and
    without the front end's own trace: both add overhead to the window they measure, and the split needs neither
    (the worker's trace holds the step annotations and the forward scope)."""
    return {"profiler": "torch", "torch_profiler_dir": str(raw_dir), "torch_profiler_with_stack": False,
            "ignore_frontend": True}


def window_prefix(concurrency: int) -> str:
    """The profile_prefix of a window's /start_profile: its trace files start with it."""
    return f"c{concurrency}"


def plan(study, model_dir: Path, run_dir, port) -> list[Step]:
    p, url = study.profile, base_url(study.server.host, port)
    raw = RunLayout(run_dir).raw_dir("profile")
    cfg = json.dumps(profiler_config(raw), separators=(",", ":"))
    steps = [Step("profile", "profile-server", "server",
                  cmdline.serve_argv(study, model_dir, port, extra=["--profiler-config", cfg]), env=dict(SCOPES_ENV))]
    shape = (f"{p.input_len} prompt tokens, max_tokens {p.output_len}, ignore_eos, temperature 0, stream")
    for c in p.concurrency:
        steps.append(Step("profile", f"window-c{c}", "http", text=(
            f"# {c} concurrent POST {url}/v1/completions ({shape}); chunk arrival times give ms per output token")))
        steps.append(Step("profile", f"profiled-c{c}", "http", text=(
            f"curl -X POST {url}/start_profile -H 'Content-Type: application/json' "
            f"-d '{{\"profile_prefix\": \"{window_prefix(c)}\"}}'\n"
            f"# the same {c} requests\ncurl -X POST {url}/stop_profile")))
    return steps


# --- requests ---------------------------------------------------------------------------------------------------

def post(url: str, payload: dict | None = None, timeout: float = REQUEST_TIMEOUT_S) -> int:
    """POST a JSON body to an endpoint that answers with no body (/start_profile, /stop_profile)."""
    req = urllib.request.Request(url, data=json.dumps(payload or {}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        body = err.read().decode("utf-8", "replace")
        raise RuntimeError(f"POST {url} answered HTTP {err.code}: {body[:2000]}") from None


def prompt_ids(vocab_size: int, n: int, salt: int) -> list[int]:
    """n token ids, different for each salt (so no request reuses another's prefix cache)."""
    span = vocab_size - PROMPT_BASE_ID
    if span <= n:
        raise ValueError(f"vocab_size {vocab_size} leaves fewer than {n} prompt ids above {PROMPT_BASE_ID}")
    return [PROMPT_BASE_ID + (salt * 7919 + i * 104729) % span for i in range(n)]


def stream_completion(url: str, model: str, prompt: list[int], max_tokens: int) -> dict[str, Any]:
    """One streamed /v1/completions request: chunk arrival times (s after sending) with the tokens each carried,
    and vLLM's usage."""
    payload = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
               "stream": True, "stream_options": {"include_usage": True}, "return_token_ids": True}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    chunks: list[tuple[float, int]] = []
    usage = None
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                body = line[5:].strip()
                if body == "[DONE]":
                    break
                chunk = json.loads(body)
                usage = chunk.get("usage") or usage
                n = sum(len(c.get("token_ids") or []) for c in chunk.get("choices") or [])
                if n:
                    chunks.append((time.monotonic() - t0, n))
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"POST {url}/v1/completions answered HTTP {err.code}: "
                           f"{err.read().decode('utf-8', 'replace')[:2000]}") from None
    return {"chunks": chunks, "usage": usage}


def request_timing(answer: dict[str, Any]) -> dict[str, Any]:
    """A streamed answer's timing: first and last chunk, and the steady decode time per token between them."""
    chunks, usage = answer["chunks"], answer.get("usage") or {}
    if not chunks:
        raise RuntimeError(f"a streamed request returned no token (usage {usage})")
    tokens = usage.get("completion_tokens")
    if tokens is None:
        raise RuntimeError("the stream carried no usage.completion_tokens (stream_options.include_usage)")
    after_first = tokens - chunks[0][1]
    decode_s = chunks[-1][0] - chunks[0][0]
    return {"output_tokens": tokens, "ttft_s": round(chunks[0][0], 6), "last_token_s": round(chunks[-1][0], 6),
            "ms_per_output_token": round(decode_s * 1000 / after_first, 6) if after_first > 0 else None}


def run_window(url: str, model: str, p: ProfileParams, concurrency: int, vocab_size: int, salt: int,
               clock0: float | None = None) -> dict[str, Any]:
    """`concurrency` requests at once; their timings and the mean ms per output token. `clock0`: the telemetry
    clock's origin, so the window can be found in its samples."""
    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda i: stream_completion(url, model, prompt_ids(vocab_size, p.input_len,
                                                                                   salt + i), p.output_len),
                                range(concurrency)))
    end = time.monotonic()
    reqs = [request_timing(a) for a in answers]
    per_token = [r["ms_per_output_token"] for r in reqs if r["ms_per_output_token"] is not None]
    if not per_token:
        raise RuntimeError(f"no request of the window (concurrency {concurrency}) streamed more than one chunk")
    out = {"requests": reqs, "wall_s": round(end - start, 6), "output_tokens": sum(r["output_tokens"] for r in reqs),
           "ms_per_output_token": round(sum(per_token) / len(per_token), 6)}
    if clock0 is not None:
        out["window_s"] = [round(start - clock0, 6), round(end - clock0, 6)]
    return out


def overhead(unprofiled: float, profiled: float) -> float:
    """Profiler overhead: how much longer a token takes with the profiler recording."""
    return round((profiled - unprofiled) / unprofiled, 6)


def verdict(outside_share: float, threshold: float) -> str:
    return "host-bound" if outside_share > threshold else "device-bound"


# --- energy -----------------------------------------------------------------------------------------------------

def window_energy_row(platform: str, series: list[dict], window_s: list[float] | None, output_tokens: int,
                      rapl: RaplWindow | None = None, rapl_reason: str | None = None,
                      idle_power_w: float | None = None) -> dict[str, Any]:
    """{"energy": ...} of a measured window, or {"energy_not_run": why}: npu-smi power samples on NPU (the
    telemetry series), RAPL counters read around the window on CPU."""
    try:
        if platform == "npu":
            if window_s is None:
                return {"energy_not_run": "the window was not placed on the telemetry clock"}
            e = window_energy(series, window_s, output_tokens, idle_power_w)
        elif rapl is not None:
            e = rapl.energy(output_tokens, idle_power_w)
        else:
            return {"energy_not_run": rapl_reason or rapl_not_run() or "RAPL was not read around the window"}
    except EnergyError as err:
        return {"energy_not_run": str(err)}
    return {"energy": e.model_dump()}


def idle_power(platform: str, seconds: float = IDLE_SECONDS) -> dict[str, Any]:
    """Power before the engine starts ({"idle_power_w"}), or why not ({"idle_not_run"})."""
    if platform == "npu":
        with Telemetry("npu", label="idle") as tel:
            t0 = time.monotonic()
            time.sleep(seconds)
            t1 = time.monotonic()
        try:
            # the telemetry clock starts when `with` enters, a moment before t0: its window starts at 0
            e = window_energy(tel.series, [0.0, t1 - t0])
        except EnergyError as err:
            return {"idle_not_run": str(err)}
        return {"idle_power_w": e.mean_power_w}
    reason = rapl_not_run()
    if reason:
        return {"idle_not_run": reason}
    with RaplWindow() as w:
        time.sleep(seconds)
    try:
        return {"idle_power_w": w.energy().mean_power_w}
    except EnergyError as err:
        return {"idle_not_run": str(err)}


# --- the trace ----------------------------------------------------------------------------------------------------

def window_traces(raw_dir: Path, concurrency: int, wait_s: float = TRACE_WAIT_S) -> list[Path]:
    """The worker traces of one window (its profile_prefix), once the profiler has written them."""
    prefix = window_prefix(concurrency) + "_"
    deadline = time.monotonic() + wait_s
    while True:
        found = [f for f in trace_files(raw_dir) if f.name.startswith(prefix)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def split_window(files: list[Path], p: ProfileParams) -> dict[str, Any]:
    """The split of a window's trace (rank 0's: the first file), or why there is none."""
    if not files:
        return {"split_error": f"the profiler wrote no trace for this window within {TRACE_WAIT_S:.0f} s"}
    try:
        split = parse_trace(files[0], top=p.top_ops)
    except TraceError as err:
        return {"split_error": str(err)}
    return {"split": split.model_dump(),
            "verdict": verdict(split.outside_share, p.outside_share_threshold)}


# --- run ----------------------------------------------------------------------------------------------------------

def run(ctx, p: ProfileParams) -> ProfileResult:
    """Idle power, the profiler-enabled server, per concurrency an unprofiled and a profiled window, then the
    traces."""
    data: dict[str, Any] = {"params": p.model_dump(), "commands": [], "telemetry": [], "windows": []}
    with ctx.keep(data):
        data.update(idle_power(ctx.study.platform))
        steps = ctx.plan()
        server_step = steps[0]
        data["profiler_config"] = profiler_config(ctx.raw_dir)
        vocab = int(read_json(Path(ctx.model_dir) / "config.json")["vocab_size"])
        model = ctx.study.model.name_served
        with ctx.server_for(server_step) as srv:
            data.update(server=srv.label, server_ready_s=srv.ready_seconds, base_url=srv.base_url,
                        server_log=str(srv.log_path))
            data["commands"].append({"label": srv.label, "argv": srv.argv, "command": srv.command})
            url = srv.base_url
            for i in range(p.warmup_requests):
                stream_completion(url, model, prompt_ids(vocab, p.input_len, 10_000 + i), p.output_len)
            for n, c in enumerate(p.concurrency):
                win, telemetry = _window(ctx, p, srv, c, vocab, salt=1000 * (n + 1))
                data["windows"].append(win)
                data["telemetry"].append(telemetry)
        # parsed once the server is stopped: a trace takes a while to read, and the idle engine would share the cores
        for win in data["windows"]:
            win.update(split_window([Path(f) for f in win["trace_files"]], p))
    return ctx.result(data)


def _window(ctx, p: ProfileParams, srv, c: int, vocab: int, salt: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One concurrency: the unprofiled window (timed, with telemetry and energy), then the profiled one and the
    trace files it left; returns the window and the unprofiled window's telemetry."""
    url, model = srv.base_url, ctx.study.model.name_served
    win: dict[str, Any] = {"concurrency": c}
    rapl_reason = rapl_not_run() if ctx.study.platform == "cpu" else None
    rapl = RaplWindow() if ctx.study.platform == "cpu" and rapl_reason is None else None
    with Telemetry(ctx.study.platform, label=f"window-c{c}") as tel, rapl or nullcontext():
        clock0 = time.monotonic()  # the telemetry clock starts as `with` enters: this is within a moment of it
        win["unprofiled"] = run_window(url, model, p, c, vocab, salt, clock0)
    telemetry = tel.to_dict()
    telemetry.update(window_s=win["unprofiled"]["window_s"], window_how="the unprofiled window's requests")
    win.update(window_energy_row(ctx.study.platform, tel.series, win["unprofiled"]["window_s"],
                                 win["unprofiled"]["output_tokens"], rapl, rapl_reason, None))
    srv.check_alive()
    post(url + "/start_profile", {"profile_prefix": window_prefix(c)})
    try:
        # the same prompts: the two windows differ only by the profiler
        win["profiled"] = run_window(url, model, p, c, vocab, salt)
    finally:
        post(url + "/stop_profile")
    win["overhead"] = overhead(win["unprofiled"]["ms_per_output_token"], win["profiled"]["ms_per_output_token"])
    win["trace_files"] = [str(f) for f in window_traces(ctx.raw_dir, c)]
    return win, telemetry


def charts(ctx, result: ProfileResult) -> list[str]:
    """Per decode step of each window's trace: time inside the model's forward and outside it, stacked."""
    windows = [w for w in result.windows if w.split is not None]
    paths = []
    if windows:
        import matplotlib
        matplotlib.use("agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(windows), 1, figsize=(9, 2.8 * len(windows)), squeeze=False)
        for ax, w in zip(axes[:, 0], windows):
            steps = [s for s in w.split.steps if s.decode is not False]
            xs = [s.step for s in steps]
            inside = [s.in_model_ms for s in steps]
            ax.bar(xs, inside, label="in the model's forward", color="tab:blue")
            ax.bar(xs, [s.outside_model_ms for s in steps], bottom=inside, label="outside it", color="tab:orange")
            ax.set_xlabel("decode step (trace order)")
            ax.set_ylabel("ms")
            ax.set_title(f"concurrency {w.concurrency}: {w.split.outside_share * 100:.0f} % of a step outside the "
                         f"model ({w.verdict})")
            ax.legend(fontsize=7)
        paths.append(ctx.save_figure(fig, "steps"))
    return paths + telemetry_charts(ctx, result.telemetry)
