"""What a token costs in energy: joules over a measured window, per output token and tokens per joule.

One function, `window_energy`, reads a telemetry series (studykit.engine.telemetry, a sample every ~0.5 s) either
way:
- NPU: the `npu<NPU>_<chip>_power_w` samples (from `npu-smi info`). Each chip's power is integrated with the
  trapezoid rule over the samples inside the window; chips are summed.
- CPU: the `rapl_<domain>_uj` samples, cumulative RAPL energy counters (/sys/class/powercap/intel-rapl:N/energy_uj,
  package domains; the subdomains intel-rapl:N:M are parts of their package and are not added again). A counter
  that went down between two samples wrapped once at its max_energy_range_uj (the telemetry records it per
  domain); the energy is the unwrapped counter at the window's end minus at its start. Sampled in the series, a
  window found after the fact (engine ready, read from the log once the bench is over) still gets an energy.
Either way a window edge takes the value interpolated linearly between the samples on both sides of it, when
there are; else only the sampled span counts, never extrapolated: `coverage` (sampled span / window) says how much
of the window that is. `RaplWindow` reads the counters around a `with` block instead.

Dynamic energy = total - idle power x the integrated span, when an idle power (measured before the engine started)
is given: the span, not the whole window, because only the span's energy is in the total.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from studykit.engine.rapl import POWERCAP, RAPL_KEY, rapl_key, rapl_max_ranges, rapl_not_run, read_rapl
from studykit.schema.base import Record, TelemetrySeries

POWER_KEY = re.compile(r"^npu\d+_\d+_power_w$")
IDLE_SECONDS = 3.0


class EnergyError(ValueError):
    """Power samples or counters that cannot give an energy; the message says which and why."""


class Energy(Record):
    source: Literal["npu-smi power_w", "rapl"]
    domains: list[str] = Field(description="the power keys (npu-smi) or RAPL domains summed")
    window_s: float = Field(description="length of the measured window")
    sampled_s: float = Field(description="span the energy covers")
    coverage: float = Field(description="sampled_s / window_s")
    samples: int = Field(description="samples inside the window (RaplWindow: its two counter reads)")
    interval_s: float | None = Field(None, description="median time between power samples")
    joules: float
    mean_power_w: float = Field(description="joules / sampled_s")
    output_tokens: int | None = None
    joules_per_token: float | None = None
    tokens_per_joule: float | None = None
    idle_power_w: float | None = None
    dynamic_joules: float | None = Field(None, description="joules - idle_power_w x sampled_s")
    dynamic_joules_per_token: float | None = None


def _per_token(e: dict[str, Any], tokens: int | None, idle_power_w: float | None) -> Energy:
    if tokens is not None:
        if tokens <= 0:
            raise EnergyError(f"output_tokens {tokens}: must be > 0 for a per-token energy")
        e.update(output_tokens=tokens, joules_per_token=e["joules"] / tokens,
                 tokens_per_joule=tokens / e["joules"] if e["joules"] > 0 else None)
    if idle_power_w is not None:
        if idle_power_w < 0:
            raise EnergyError(f"idle_power_w {idle_power_w}: a power is >= 0")
        dyn = e["joules"] - idle_power_w * e["sampled_s"]
        e.update(idle_power_w=idle_power_w, dynamic_joules=dyn,
                 dynamic_joules_per_token=dyn / tokens if tokens else None)
    return Energy(**e)


def _edge(a: tuple[float, float], b: tuple[float, float], t: float) -> float:
    (t0, p0), (t1, p1) = a, b
    return p0 + (p1 - p0) * (t - t0) / (t1 - t0)


def _trapezoid(points: list[tuple[float, float]]) -> float:
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:]))


def _clip(pts: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    """The (t, value) points inside [start, end], with the value at an edge interpolated when samples lie on both
    sides of it."""
    before = [p for p in pts if p[0] < start]
    after = [p for p in pts if p[0] > end]
    inside = [p for p in pts if start <= p[0] <= end]
    if inside and before:
        inside.insert(0, (start, _edge(before[-1], inside[0], start)))
    if inside and after:
        inside.append((end, _edge(inside[-1], after[0], end)))
    return inside


def _unwrapped(pts: list[tuple[float, int]], max_range_uj: int) -> list[tuple[float, float]]:
    """A RAPL counter's samples as energy since the first sample (µJ), each wrap undone."""
    out, total = [], 0
    for i, (t, uj) in enumerate(pts):
        if i:
            total += rapl_delta_uj(pts[i - 1][1], uj, max_range_uj)
        out.append((t, float(total)))
    return out


def window_energy(series: list[dict[str, Any]], window_s: tuple[float, float] | list[float],
                  output_tokens: int | None = None, idle_power_w: float | None = None,
                  max_energy_range_uj: dict[str, int] | None = None) -> Energy:
    """Energy inside [start, end] seconds of a telemetry series' clock (`t_s`): from its NPU power samples when it
    has any, else from its RAPL counter samples (`max_energy_range_uj`: per domain, to undo a wrap)."""
    start, end = (float(x) for x in window_s)
    if not end > start:
        raise EnergyError(f"window {list(window_s)}: the end must be after the start")
    keys = sorted({k for s in series for k in s if POWER_KEY.match(k)})
    rapl = not keys
    if rapl:
        keys = sorted({k for s in series for k in s if RAPL_KEY.match(k)})
    if not keys:
        raise EnergyError("no npu<N>_<chip>_power_w nor rapl_<domain>_uj in the samples: no power was sampled "
                          "(npu-smi reported none, or this host exposes no RAPL counters)")
    joules = 0.0
    lo, hi = end, start
    inside_times: set[float] = set()
    for key in keys:
        pts = sorted((float(s["t_s"]), s[key]) for s in series
                     if isinstance(s.get(key), (int, float)) and "t_s" in s)
        inside_times.update(t for t, _ in pts if start <= t <= end)
        if rapl:
            domain = RAPL_KEY.match(key)["domain"]
            inside = _clip(_unwrapped(pts, (max_energy_range_uj or {}).get(domain, 0)), start, end)
        else:
            inside = _clip([(t, float(p)) for t, p in pts], start, end)
        if len(inside) < 2:
            continue
        joules += (inside[-1][1] - inside[0][1]) / 1e6 if rapl else _trapezoid(inside)
        lo, hi = min(lo, inside[0][0]), max(hi, inside[-1][0])
    if hi <= lo:
        what = "RAPL counter reads of any domain" if rapl else "power samples of any chip"
        raise EnergyError(f"fewer than two {what} inside the window [{start}, {end}] s "
                          f"({len(series)} samples in all): no energy")
    times = sorted(inside_times)
    interval = statistics.median(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else None
    span = hi - lo
    domains = [RAPL_KEY.match(k)["domain"] for k in keys] if rapl else keys
    return _per_token({"source": "rapl" if rapl else "npu-smi power_w", "domains": domains, "window_s": end - start,
                       "sampled_s": span, "coverage": span / (end - start), "samples": len(times),
                       "interval_s": interval, "joules": joules, "mean_power_w": joules / span},
                      output_tokens, idle_power_w)


def telemetry_energy(telemetry: dict[str, Any], output_tokens: int | None = None,
                     idle_power_w: float | None = None) -> dict[str, Any]:
    """{"energy": ...} of a telemetry record's measured window (its `window_s`), or {"energy_not_run": why}."""
    series = telemetry.get("series") or []
    sampled = any(POWER_KEY.match(k) or RAPL_KEY.match(k) for s in series for k in s)
    if not sampled and telemetry.get("platform") == "cpu":
        reason = rapl_not_run()
        if reason:
            return {"energy_not_run": reason}
    if not telemetry.get("window_s"):
        return {"energy_not_run": "the measured window is not known (window_s missing: its start or end was not "
                                  "found)"}
    try:
        e = window_energy(series, telemetry["window_s"], output_tokens, idle_power_w,
                          telemetry.get("rapl_max_energy_range_uj"))
    except EnergyError as err:
        return {"energy_not_run": str(err)}
    return {"energy": e.model_dump()}


# --- RAPL (CPU) ---

def rapl_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Energy between two reads of one counter; the counter wraps to 0 past max_range_uj (once, at most: a window
    longer than a wrap period, hours at full power, cannot be told apart)."""
    if after >= before:
        return after - before
    if max_range_uj <= 0:
        raise EnergyError(f"the RAPL counter went down ({before} -> {after}) and max_energy_range_uj is "
                          f"{max_range_uj}: cannot unwrap")
    return after + max_range_uj - before


class RaplWindow:
    """`with RaplWindow() as w: ...` then `w.energy(output_tokens, idle_power_w)`."""

    def __init__(self, root: Path = POWERCAP):
        reason = rapl_not_run(root)
        if reason:
            raise EnergyError(reason)
        self.root = root
        self.before: dict[str, int] = {}
        self.after: dict[str, int] = {}
        self.t0 = self.t1 = 0.0

    def __enter__(self) -> "RaplWindow":
        self.before, self.t0 = read_rapl(self.root), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.after, self.t1 = read_rapl(self.root), time.monotonic()

    def energy(self, output_tokens: int | None = None, idle_power_w: float | None = None) -> Energy:
        span = self.t1 - self.t0
        if span <= 0:
            raise EnergyError("the RAPL window has no length: read it inside `with RaplWindow()`")
        # the two reads as a two-sample series on the window's own clock
        reads = [{"t_s": t, **{rapl_key(name): uj for name, uj in r.items()}}
                 for t, r in ((0.0, self.before), (span, self.after))]
        return window_energy(reads, [0.0, span], output_tokens, idle_power_w, rapl_max_ranges(self.root))


def idle_power(platform: str, seconds: float = IDLE_SECONDS) -> dict[str, Any]:
    """Power before any engine starts ({"idle_power_w"}), or why not ({"idle_not_run"}): npu-smi power samples on
    NPU, RAPL on CPU (instant when the host has none)."""
    from studykit.engine.telemetry import Telemetry

    if platform == "npu":
        with Telemetry("npu", label="idle") as tel:
            t0 = time.monotonic()
            time.sleep(seconds)
            t1 = time.monotonic()
        try:
            # the telemetry clock starts when `with` enters, a moment before t0: its window starts at 0
            return {"idle_power_w": window_energy(tel.series, [0.0, t1 - t0]).mean_power_w}
        except EnergyError as err:
            return {"idle_not_run": str(err)}
    reason = rapl_not_run()
    if reason:
        return {"idle_not_run": reason}
    with RaplWindow() as w:
        time.sleep(seconds)
    try:
        return {"idle_power_w": w.energy().mean_power_w}
    except EnergyError as err:
        return {"idle_not_run": str(err)}


class IdlePower(Record):
    """A result's idle power, measured once per run before any engine started (the runner's
    results/idle_power.json)."""

    idle_power_w: float | None = Field(None, description="before any engine started")
    idle_not_run: str | None = Field(None, description="why no idle power was measured")


class TelemetryEnergy(TelemetrySeries):
    """A bench's telemetry with the energy of its measured window (`window_s`), or why there is none."""

    energy: Energy | None = None
    energy_not_run: str | None = None
