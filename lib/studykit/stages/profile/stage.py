"""Why decode runs at the speed it does: per decode step, the time inside the model's forward against the time
outside it (scheduler, sampler, Python, input prep, waiting), from vLLM's own torch profiler; and what a token
costs in energy where the host exposes power.

The server is the study's `vllm serve` plus `--profiler-config` (a different command, so its own server, never a
shared one) and VLLM_CUSTOM_SCOPES_FOR_PROFILING=1 (vLLM then marks its forward with a profiler scope, which is
what "inside the model" is measured by). For each concurrency of the params (1, and the serve stage's saturated
batch by default): one warm-up window at that concurrency, then windows of the same streamed requests without the
profiler and between /start_profile and /stop_profile, in the order off on on off (`repeats` of each kind). The
first profiled window's trace gives the split (the others are kept); the first unprofiled window's power gives the
energy. The profiler's overhead is the ratio of the two kinds' mean ms per output token; the spread of the
unprofiled windows says how much of that ratio the host alone would move.

On NPU (vllm-ascend) the same endpoints drive torch_npu's profiler, which writes one `*_ascend_pt` directory per
rank and analyses it into ASCEND_PROFILER_OUTPUT/ (stages/profile/npu.py reads it); vllm-ascend keeps the first
window's trace name for later windows, so a window's output is told by what appeared during it, not by name.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from studykit.energy import telemetry_energy
from studykit.engine import cmdline
from studykit.engine.telemetry import Telemetry
from studykit.evidence.rundir import RunLayout, read_json
from studykit.plan import Step, base_url
from studykit.stages.benchtools import telemetry_charts
from studykit.stages.profile.npu import parse_npu_profile
from studykit.stages.profile.params import SATURATED, ProfileParams, window_order
from studykit.stages.profile.result import ProfileResult, relative_spread
from studykit.stages.profile.trace import TraceError, parse_trace, trace_files

SCOPES_ENV = {"VLLM_CUSTOM_SCOPES_FOR_PROFILING": "1"}
REQUEST_TIMEOUT_S = 600.0
TRACE_WAIT_S = {"cpu": 120.0, "npu": 900.0}  # torch_npu analyses its output when the profiler stops: minutes
PROMPT_BASE_ID = 1000  # prompt token ids from here on: clear of the special tokens at the start of a vocabulary


def profiler_config(raw_dir: str | Path) -> dict[str, Any]:
    """vLLM's ProfilerConfig (vllm/config/profiler.py) as `--profiler-config` JSON. Without Python stacks and
    without the front end's own trace: both add overhead to the window they measure, and the split needs neither
    (the worker's trace holds the step annotations and the forward scope)."""
    return {"profiler": "torch", "torch_profiler_dir": str(raw_dir), "torch_profiler_with_stack": False,
            "ignore_frontend": True}


def window_prefix(concurrency: int) -> str:
    """The profile_prefix of a window's /start_profile (vLLM starts its trace files with it)."""
    return f"c{concurrency}"


def saturated_batch(study, run_dir) -> tuple[int, str]:
    """The batch the serve stage's saturated point ran, and where that was read: the requests its runs had in
    flight (vLLM's max_concurrent_requests, results/serve.json of this run) or, before serve has run, the
    num_prompts it sends at once; never more than the engine schedules at a time (model.max_num_seqs)."""
    in_flight, where = None, ""
    serve_json = RunLayout(run_dir).result("serve")
    if serve_json.is_file():
        doc = read_json(serve_json)
        saturated = [r for r in doc.get("runs") or []
                     if str(r.get("request_rate")) == "inf" and r.get("max_concurrency") is None
                     and isinstance(r.get("max_concurrent_requests"), (int, float))]
        if saturated:
            in_flight = int(max(r["max_concurrent_requests"] for r in saturated))
            where = (f"serve's saturated point (rate inf): max_concurrent_requests {in_flight} in "
                     f"{serve_json.parent.name}/{serve_json.name}")
    if in_flight is None:
        in_flight = study.serve.num_prompts
        where = f"serve.num_prompts {in_flight} (serve's saturated point sends them all at once; serve has not run)"
    cap = study.model.max_num_seqs
    if cap is not None and cap < in_flight:
        return cap, f"{where}, capped at model.max_num_seqs {cap}"
    return in_flight, where


def concurrencies(study, run_dir) -> list[tuple[int, str]]:
    """(concurrency, where it came from) of each window, smallest first; 'saturated' resolved, duplicates once."""
    out: dict[int, str] = {}
    for c in study.profile.concurrency:
        n, where = saturated_batch(study, run_dir) if c == SATURATED else (c, "params")
        out.setdefault(n, where)
    return sorted(out.items())


def plan(study, model_dir: Path, run_dir, port) -> list[Step]:
    p, url = study.profile, base_url(study.server.host, port)
    raw = RunLayout(run_dir).raw_dir("profile")
    cfg = json.dumps(profiler_config(raw), separators=(",", ":"))
    steps = [Step("profile", "profile-server", "server",
                  cmdline.serve_argv(study, model_dir, port, extra=["--profiler-config", cfg]), env=dict(SCOPES_ENV))]
    shape = (f"{p.input_len} prompt tokens, max_tokens {p.output_len}, ignore_eos, temperature 0, stream")
    order = " ".join(window_order(p.repeats))
    for c, where in concurrencies(study, run_dir):
        steps.append(Step("profile", f"window-c{c}", "http", text=(
            f"# concurrency {c} ({where}): {c} concurrent POST {url}/v1/completions ({shape}); a warm-up window, then "
            f"the windows {order}; chunk arrival times give ms per output token")))
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


def mean_ms_per_token(windows: list[dict[str, Any]]) -> float | None:
    return round(sum(w["ms_per_output_token"] for w in windows) / len(windows), 6) if windows else None


def overhead(unprofiled: float, profiled: float) -> float:
    """Profiler overhead: how much longer a token takes with the profiler recording."""
    return round((profiled - unprofiled) / unprofiled, 6)


def spread(windows: list[dict[str, Any]]) -> float | None:
    """relative_spread of the windows' ms per token, rounded to 6 places as the result stores it."""
    out = relative_spread([w["ms_per_output_token"] for w in windows])
    return None if out is None else round(out, 6)


def verdict(outside_share: float, threshold: float) -> str:
    return "host-bound" if outside_share > threshold else "device-bound"


# --- the trace ----------------------------------------------------------------------------------------------------

def profiler_outputs(raw_dir: Path, platform: str) -> set[Path]:
    """What the profiler has written so far: vLLM's Chrome traces (CPU), torch_npu's `*_ascend_pt` directories
    (NPU)."""
    if platform == "npu":
        return set(Path(raw_dir).glob("*_ascend_pt"))
    return set(trace_files(raw_dir))


def _rank0_first(path: Path) -> tuple:
    # vLLM names a worker's trace after its ranks (..._rank0...); the split reads rank 0's
    return ("rank0" not in path.name, path.name)


def _complete(path: Path, platform: str) -> bool:
    return platform != "npu" or (path / "ASCEND_PROFILER_OUTPUT" / "step_trace_time.csv").is_file()


def new_outputs(raw_dir: Path, platform: str, before: set[Path], wait_s: float | None = None) -> list[Path]:
    """The profiler outputs that appeared since `before` (one window's), rank 0's first, once written (on NPU:
    analysed); what is there when `wait_s` runs out."""
    deadline = time.monotonic() + (TRACE_WAIT_S[platform] if wait_s is None else wait_s)
    while True:
        found = sorted(profiler_outputs(raw_dir, platform) - before, key=_rank0_first)
        if (found and all(_complete(f, platform) for f in found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def split_window(files: list[Path], p: ProfileParams, platform: str) -> dict[str, Any]:
    """The split of a window's profiler output (rank 0's: the first), or why there is none."""
    if not files:
        return {"split_error": f"the profiler wrote nothing for this window within {TRACE_WAIT_S[platform]:.0f} s"}
    try:
        split = parse_npu_profile(files[0], top=p.top_ops) if platform == "npu" else parse_trace(files[0],
                                                                                                top=p.top_ops)
    except TraceError as err:
        return {"split_error": str(err)}
    return {"split": split.model_dump(),
            "verdict": verdict(split.outside_share, p.outside_share_threshold)}


# --- run ----------------------------------------------------------------------------------------------------------

def run(ctx, p: ProfileParams) -> ProfileResult:
    """Idle power, the profiler-enabled server, per concurrency a warm-up window and the alternated windows, then
    the traces."""
    data: dict[str, Any] = {"params": p.model_dump(), "commands": [], "telemetry": [], "windows": []}
    with ctx.keep(data):
        data.update(ctx.idle_power())
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
            for n, (c, where) in enumerate(concurrencies(ctx.study, ctx.run_dir)):
                win = {"concurrency": c, "concurrency_from": where, "order": window_order(p.repeats),
                       "unprofiled": [], "profiled": []}
                data["windows"].append(win)
                data["telemetry"].append(_windows(ctx, p, srv, win, vocab, 1000 * (n + 1), data.get("idle_power_w")))
        # parsed once the server is stopped: a trace takes a while to read, and the idle engine would share the cores
        for win in data["windows"]:
            if win["profiled"]:
                win.update(split_window([Path(f) for f in win["profiled"][0]["trace_files"]], p,
                                        ctx.study.platform))
    return ctx.result(data)


def _windows(ctx, p: ProfileParams, srv, win: dict[str, Any], vocab: int, salt: int,
             idle_power_w: float | None) -> dict[str, Any]:
    """One concurrency's windows into `win` (filled as they complete, so an interruption keeps what ran): a
    warm-up window, then the order's windows, all with the same prompts so that they differ only by the profiler.
    The first unprofiled window runs under telemetry for its energy (npu-smi power, RAPL counters); returns that
    telemetry."""
    url, model, c, platform = srv.base_url, ctx.study.model.name_served, win["concurrency"], ctx.study.platform
    run_window(url, model, p, c, vocab, salt + 500)  # other prompts: the measured ones must not hit a warm cache
    telemetry: dict[str, Any] = {}
    for kind in win["order"]:
        srv.check_alive()
        if kind == "off" and not win["unprofiled"]:
            with Telemetry(platform, label=window_prefix(c)) as tel:  # the window checks' subject
                clock0 = time.monotonic()  # the telemetry clock starts as `with` enters: within a moment of it
                timing = run_window(url, model, p, c, vocab, salt, clock0)
            telemetry = tel.to_dict()
            telemetry.update(window_s=timing["window_s"], window_how="the first unprofiled window's requests")
            energy = telemetry_energy(telemetry, timing["output_tokens"], idle_power_w)
            telemetry.update(energy)
            win.update(energy)
        elif kind == "off":
            timing = run_window(url, model, p, c, vocab, salt)
        else:
            before = profiler_outputs(ctx.raw_dir, platform)
            post(url + "/start_profile", {"profile_prefix": window_prefix(c)})
            try:
                timing = run_window(url, model, p, c, vocab, salt)
            finally:
                post(url + "/stop_profile")
            timing["trace_files"] = [str(f) for f in new_outputs(ctx.raw_dir, platform, before)]
        win["unprofiled" if kind == "off" else "profiled"].append(timing)
    off, on = mean_ms_per_token(win["unprofiled"]), mean_ms_per_token(win["profiled"])
    win.update(ms_per_output_token_off=off, ms_per_output_token_on=on, overhead=overhead(off, on),
               spread_off=spread(win["unprofiled"]))
    return telemetry


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
