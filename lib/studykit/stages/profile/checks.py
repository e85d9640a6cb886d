"""The profile stage's checks: the server ran with vLLM's torch profiler writing under raw/profile/; per window,
every request produced the tokens asked for, the trace was found and parsed into steps, it holds enough decode
steps, each step's in-model and outside times add up to its period, the overhead is the ratio of the two kinds of
windows' own timings and small enough for the profiled steps to stand for the unprofiled ones, and the energy per
token (not_run with the reason where the host exposes no power)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from studykit.checks import check, energy_per_token, not_run
from studykit.schema.base import Check
from studykit.stages.profile.params import ProfileParams
from studykit.stages.profile.result import ProfileResult, ProfileWindow, relative_spread

ADD_UP_MS = 1e-5  # the parser rounds each time to 1e-6 ms: a sum of two rounded values is off by at most 1e-6


def subject(w: ProfileWindow) -> str:
    return f"c{w.concurrency}"


def _profiler_config(argv: list[str]) -> dict | None:
    if "--profiler-config" not in argv:
        return None
    i = len(argv) - 1 - argv[::-1].index("--profiler-config")  # argparse keeps the last
    try:
        cfg = json.loads(argv[i + 1])
    except (IndexError, json.JSONDecodeError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _spread(windows) -> float:
    """0 for fewer than two windows: nothing to tell noise by."""
    return relative_spread([t.ms_per_output_token for t in windows]) or 0.0


def profiler_enabled(result: ProfileResult) -> Check:
    cid, name = "profile.profiler_enabled", "the server ran vLLM's torch profiler writing under raw/profile/"
    cmd = next((c for c in result.commands if c.label == result.server), None) if result.server else None
    if cmd is None:
        return not_run(cid, name, "the result records no server command")
    cfg = _profiler_config(cmd.argv)
    if cfg is None:
        return check(cid, name, False, "the command has no --profiler-config JSON", "torch", None)
    where = Path(str(cfg.get("torch_profiler_dir", "")))
    ok = cfg.get("profiler") == "torch" and where.parts[-2:] == ("raw", "profile")
    return check(cid, name, ok, f"--profiler-config profiler {cfg.get('profiler')}, torch_profiler_dir {where}",
                 "torch, .../raw/profile", cfg)


def checks(p: ProfileParams, result: ProfileResult) -> list[Check]:
    out = [profiler_enabled(result)]
    for w in result.windows:
        out += window_checks(p, w)
    return out


def window_checks(p: ProfileParams, w: ProfileWindow) -> list[Check]:
    s = subject(w)
    out = []

    name = "every request produced output_len tokens"
    got = [(f"{label} {i + 1}", [r.output_tokens for r in t.requests])
           for label, kind in (("unprofiled", w.unprofiled), ("profiled", w.profiled)) for i, t in enumerate(kind)]
    bad = [f"{label}: {toks}" for label, toks in got if len(toks) != w.concurrency or set(toks) != {p.output_len}]
    out.append(check("profile.tokens_as_requested", name, bool(got) and not bad,
                     f"{w.concurrency} requests x {p.output_len} tokens in {len(got)} windows" if not bad else
                     f"{w.concurrency} requests x {p.output_len} tokens asked; got {'; '.join(bad) or 'no window'}",
                     p.output_len, dict(got), subject=s))

    name = "the window's trace was found and parsed into steps"
    if w.split is None:
        out.append(check("profile.trace_parsed", name, False, w.split_error or "no split recorded",
                         "a parsed trace", w.profiled[0].trace_files if w.profiled else [], subject=s))
    else:
        out.append(check("profile.trace_parsed", name, True,
                         f"{Path(w.split.path).name}: {len(w.split.steps)} steps", "a parsed trace",
                         len(w.split.steps), subject=s))

    no_split = "no split (profile.trace_parsed says why)"
    name = "decode steps in the trace >= min_decode_steps"
    if w.split is None:
        out.append(not_run("profile.enough_decode_steps", name, no_split, "profile.decode_steps", s))
    elif all(st.decode is None for st in w.split.steps):
        out.append(not_run("profile.enough_decode_steps", name, f"the profiler output does not say which steps "
                           f"decode ({w.split.averaged_over}): the split is over them all", "profile.decode_steps", s))
    else:
        n = w.split.decode_steps
        out.append(check("profile.enough_decode_steps", name, n >= p.min_decode_steps,
                         f"{n} decode steps, at least {p.min_decode_steps} wanted", p.min_decode_steps, n,
                         "profile.decode_steps", s))

    name = "in the model + outside it = the step's period"
    if w.split is None:
        out.append(not_run("profile.split_adds_up", name, no_split, subject=s))
    else:
        sp = w.split
        bad_steps = [st.step for st in sp.steps
                     if abs(st.in_model_ms + st.outside_model_ms - st.period_ms) > ADD_UP_MS
                     or st.in_model_ms < 0 or st.outside_model_ms < -ADD_UP_MS
                     or not -ADD_UP_MS <= st.idle_ms <= st.period_ms + ADD_UP_MS]
        means_off = abs(sp.mean_in_model_ms + sp.mean_outside_model_ms - sp.mean_period_ms) > ADD_UP_MS
        detail = (f"{len(sp.steps)} steps and the means add up" if not bad_steps and not means_off else
                  f"steps {bad_steps[:10]} do not add up" + ("; nor do the means" if means_off else ""))
        out.append(check("profile.split_adds_up", name, not bad_steps and not means_off, detail, 0,
                         len(bad_steps) + means_off, subject=s))

    name = "profiler overhead = mean profiled / mean unprofiled ms per token - 1"
    if not w.unprofiled or not w.profiled:
        out.append(not_run("profile.overhead_measured", name, "a window did not complete",
                           "profile.overhead", s))
    else:
        a = sum(t.ms_per_output_token for t in w.unprofiled) / len(w.unprofiled)
        b = sum(t.ms_per_output_token for t in w.profiled) / len(w.profiled)
        want = (b - a) / a
        ok = w.overhead is not None and math.isfinite(w.overhead) and abs(w.overhead - want) <= 1e-6
        shown = "none" if w.overhead is None else f"{w.overhead * 100:.1f} %"
        out.append(check("profile.overhead_measured", name, ok,
                         f"unprofiled {a:.4g} ms, profiled {b:.4g} ms per token ({len(w.unprofiled)} + "
                         f"{len(w.profiled)} windows); overhead {shown}", round(want, 6), w.overhead,
                         "profile.overhead", s))

    name = "|profiler overhead| <= max_overhead, beyond what the host moves by itself"
    if w.overhead is None:
        out.append(not_run("profile.overhead_small", name, "no overhead measured", "profile.overhead", s))
    else:
        # A loaded host moves the same window by tens of % (seen: 39 % between two unprofiled c1 windows beside a
        # test suite); an overhead above max_overhead by less than that is not the profiler's to be shown. Fails
        # when the excess is larger than the spread of either kind of window.
        noise = max(_spread(w.unprofiled), _spread(w.profiled))
        excess = abs(w.overhead) - p.max_overhead
        out.append(check("profile.overhead_small", name, excess <= noise,
                         f"overhead {w.overhead * 100:.1f} %, at most ±{p.max_overhead * 100:.0f} % beyond the host's "
                         f"own spread {noise * 100:.1f} % (the larger of the two kinds of window)",
                         p.max_overhead, w.overhead, "profile.overhead", s))

    out.append(energy_per_token("profile", w, w.unprofiled[0].output_tokens if w.unprofiled else None, s))
    return out
