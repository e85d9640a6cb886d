"""What a token costs in energy: joules over a measured window, per output token and tokens per joule.

Two sources:
- NPU: the `npu<NPU>_<chip>_power_w` samples studykit.engine.telemetry already takes (from `npu-smi info`, every
  ~0.5 s). Each chip's power is integrated with the trapezoid rule over the samples inside the window (the value
  at a window edge is interpolated when samples lie on both sides of it); chips are summed. Only the sampled span
  is integrated, never extrapolated: `coverage` (sampled span / window) says how much of the window that is.
- CPU: RAPL energy counters (/sys/class/powercap/intel-rapl:N/energy_uj, package domains; the subdomains
  intel-rapl:N:M are parts of their package and are not added again), read before and after the window; a counter
  that went down wrapped once at its max_energy_range_uj.

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

from studykit.schema.base import Record

POWERCAP = Path("/sys/class/powercap")
POWER_KEY = re.compile(r"^npu\d+_\d+_power_w$")
_PACKAGE = re.compile(r"^intel-rapl:\d+$")


class EnergyError(ValueError):
    """Power samples or counters that cannot give an energy; the message says which and why."""


class Energy(Record):
    source: Literal["npu-smi power_w", "rapl"]
    domains: list[str] = Field(description="the power keys (npu-smi) or RAPL domains summed")
    window_s: float = Field(description="length of the measured window")
    sampled_s: float = Field(description="span the energy covers")
    coverage: float = Field(description="sampled_s / window_s")
    samples: int = Field(description="power samples inside the window (npu-smi) / counter reads (RAPL: 2)")
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


def window_energy(series: list[dict[str, Any]], window_s: tuple[float, float] | list[float],
                  output_tokens: int | None = None, idle_power_w: float | None = None) -> Energy:
    """Energy of the NPU power samples of a telemetry series (`t_s` and `npu<N>_<chip>_power_w` keys) inside
    [start, end] seconds of the same clock."""
    start, end = (float(x) for x in window_s)
    if not end > start:
        raise EnergyError(f"window {list(window_s)}: the end must be after the start")
    keys = sorted({k for s in series for k in s if POWER_KEY.match(k)})
    if not keys:
        raise EnergyError("no npu<N>_<chip>_power_w in the samples: npu-smi reported no power (or this is not an "
                          "NPU host)")
    joules = 0.0
    lo, hi = end, start
    inside_times: set[float] = set()
    for key in keys:
        pts = sorted((float(s["t_s"]), float(s[key])) for s in series
                     if isinstance(s.get(key), (int, float)) and "t_s" in s)
        before = [p for p in pts if p[0] < start]
        after = [p for p in pts if p[0] > end]
        inside = [p for p in pts if start <= p[0] <= end]
        inside_times.update(t for t, _ in inside)
        if inside and before:
            inside.insert(0, (start, _edge(before[-1], inside[0], start)))
        if inside and after:
            inside.append((end, _edge(inside[-1], after[0], end)))
        if len(inside) < 2:
            continue
        joules += _trapezoid(inside)
        lo, hi = min(lo, inside[0][0]), max(hi, inside[-1][0])
    if hi <= lo:
        raise EnergyError(f"fewer than two power samples of any chip inside the window [{start}, {end}] s "
                          f"({len(series)} samples in all): no energy")
    times = sorted(inside_times)
    interval = statistics.median(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else None
    span = hi - lo
    return _per_token({"source": "npu-smi power_w", "domains": keys, "window_s": end - start, "sampled_s": span,
                       "coverage": span / (end - start), "samples": len(times), "interval_s": interval,
                       "joules": joules, "mean_power_w": joules / span}, output_tokens, idle_power_w)


# --- RAPL (CPU) ---

def rapl_domains(root: Path = POWERCAP) -> dict[str, Path]:
    """Package domains, name -> directory (`intel-rapl:0` ...)."""
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if _PACKAGE.match(d.name) and (d / "energy_uj").is_file()}


def rapl_not_run(root: Path = POWERCAP) -> str | None:
    """Why RAPL cannot measure here, or None when it can."""
    if not root.is_dir():
        return f"this host exposes no RAPL power: {root} does not exist"
    domains = rapl_domains(root)
    if not domains:
        return f"this host exposes no RAPL power: {root} has no intel-rapl domain"
    for name, d in domains.items():
        try:
            int((d / "energy_uj").read_text())
        except (OSError, ValueError) as err:
            return f"RAPL {name}/energy_uj is not readable ({type(err).__name__}: {err}); it is root-only on " \
                   "kernels since 5.10 (CVE-2020-8694)"
    return None


def read_rapl(root: Path = POWERCAP) -> dict[str, int]:
    """energy_uj of each package domain now."""
    return {name: int((d / "energy_uj").read_text()) for name, d in rapl_domains(root).items()}


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
        uj = 0
        for name, before in self.before.items():
            after = self.after[name]
            # the range is needed (and read) only when the counter wrapped
            max_range = int((self.root / name / "max_energy_range_uj").read_text()) if after < before else 0
            uj += rapl_delta_uj(before, after, max_range)
        span = self.t1 - self.t0
        if span <= 0:
            raise EnergyError("the RAPL window has no length: read it inside `with RaplWindow()`")
        joules = uj / 1e6
        return _per_token({"source": "rapl", "domains": sorted(self.before), "window_s": span, "sampled_s": span,
                           "coverage": 1.0, "samples": 2, "interval_s": span, "joules": joules,
                           "mean_power_w": joules / span}, output_tokens, idle_power_w)
