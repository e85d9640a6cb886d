"""Resource telemetry while a bench runs, one background thread, one sample every ~0.5 s:

- always: CPU% and resident memory of the kit's child process tree (the vllm server, the bench process and all
  their workers);
- on platform npu, in the same sample: `npu-smi info` per chip (HBM used MB, AICore %, power W when the table
  reports it; the second chip of an A3 NPU shows '-'), keys `npu<NPU>_<chip>_<metric>`;
- on platform cpu, when the host exposes readable RAPL package domains: each domain's cumulative energy counter,
  keys `rapl_<domain>_uj` (and each domain's max_energy_range_uj once, in to_dict), so that studykit.energy can
  give any window of the series an energy, also one found only after the bench.

A part that fails (npu-smi missing, exiting non-zero, output cut short) is counted and its first messages kept,
never raised: telemetry must not break the measurement it watches. npu-smi is given up after
NPU_GIVE_UP_AFTER failures in a row, so a host where it cannot work is not asked twice a second all run long.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import psutil

from studykit.engine import rapl

NPU_SMI = ("npu-smi", "info")
NPU_METRICS = ("hbm_used_mb", "aicore_percent", "power_w")
NPU_GIVE_UP_AFTER = 3


class Telemetry:
    """`with Telemetry(platform) as tel: ...` then `tel.series` (list of flat samples) and `tel.summary()`."""

    def __init__(self, platform: str = "cpu", interval_s: float = 0.5, root_pid: int | None = None,
                 label: str = "", npu_smi: Sequence[str] = NPU_SMI, powercap: Path = rapl.POWERCAP):
        if platform not in ("cpu", "npu"):
            raise ValueError(f"telemetry platform {platform!r} is unknown; allowed: cpu, npu")
        self.platform = platform
        self.npu_smi = list(npu_smi)
        self.interval_s = interval_s
        self.root = psutil.Process(root_pid or os.getpid())
        self.label = label
        self.series: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.failed = {"cpu": 0, "npu": 0, "rapl": 0}
        self.powercap = powercap
        self.samples_rapl = platform == "cpu" and rapl.rapl_not_run(powercap) is None
        self.rapl_max_energy_range_uj = rapl.rapl_max_ranges(powercap) if self.samples_rapl else {}
        self._npu_failures_in_a_row = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, psutil.Process] = {}
        # vLLM names its processes (VLLM::EngineCore, VLLM::Worker_TP0, ...): the names seen show which ranks
        # the sampled tree covered.
        self.vllm_process_titles: set[str] = set()
        self._t0 = 0.0

    def __enter__(self) -> "Telemetry":
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="studykit-telemetry", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sample: dict[str, Any] = {"t_s": round(time.monotonic() - self._t0, 3)}
            if self.samples_rapl:  # first: the counters are read at t_s, before the process walk takes its time
                sample.update(self._part("rapl", self._rapl_sample))
            sample.update(self._part("cpu", self._cpu_sample))
            if self.platform == "npu" and self._npu_failures_in_a_row < NPU_GIVE_UP_AFTER:
                npu = self._part("npu", self._npu_sample)
                self._npu_failures_in_a_row = 0 if npu else self._npu_failures_in_a_row + 1
                if self._npu_failures_in_a_row == NPU_GIVE_UP_AFTER:
                    self._note(f"npu: {NPU_GIVE_UP_AFTER} failures in a row; npu-smi is not asked again")
                sample.update(npu)
            if len(sample) > 1:
                self.series.append(sample)
            self._stop.wait(self.interval_s)

    def _part(self, part: str, sample) -> dict[str, Any]:
        try:
            return sample()
        except Exception as err:  # telemetry must never break a measurement
            self.failed[part] += 1
            self._note(f"{part}: {type(err).__name__}: {err}")
            return {}

    def _note(self, message: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(message)

    def _cpu_sample(self) -> dict[str, Any]:
        # Process objects are kept between samples: cpu_percent() measures since the previous call on the
        # same object, so a fresh object each time would always read 0.
        current = {p.pid: p for p in self.root.children(recursive=True)}
        for pid in list(self._procs):
            if pid not in current:
                del self._procs[pid]
        cpu = 0.0
        rss = 0
        for pid, proc in current.items():
            kept = self._procs.setdefault(pid, proc)
            try:
                # Read every sample: a vLLM worker starts as python, becomes VLLM::Worker, and only after the
                # parallel groups exist VLLM::Worker_TP<rank>.
                title = " ".join(kept.cmdline()).strip()
                if title.startswith("VLLM::"):
                    self.vllm_process_titles.add(title.split()[0])
                with kept.oneshot():
                    c = kept.cpu_percent(None)
                    rss += kept.memory_info().rss
                cpu += c
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return {"cpu_percent": round(cpu, 1), "rss_mib": round(rss / 2**20, 1), "processes": len(current),
                "system_cpu_percent": psutil.cpu_percent(None)}

    def _rapl_sample(self) -> dict[str, Any]:
        return {rapl.rapl_key(name): uj for name, uj in rapl.read_rapl(self.powercap).items()}

    def _npu_sample(self) -> dict[str, Any]:
        from studykit.evidence.ascend import parse_npu_smi_info

        proc = subprocess.run(self.npu_smi, capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            said = " / ".join(x.strip() for x in (proc.stdout + proc.stderr).splitlines() if x.strip())[:300]
            raise RuntimeError(f"`{' '.join(self.npu_smi)}` exited {proc.returncode}: {said or '(no output)'}")
        out: dict[str, Any] = {}
        for chip in parse_npu_smi_info(proc.stdout):
            for metric in NPU_METRICS:
                if chip.get(metric) is not None:
                    out[f"npu{chip['npu_id']}_{chip['chip_id']}_{metric}"] = chip[metric]
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": len(self.series), "interval_s": self.interval_s}
        # a RAPL counter is cumulative: its mean says nothing (studykit.energy reads it)
        for key in sorted({k for s in self.series for k in s if k != "t_s" and not rapl.RAPL_KEY.match(k)}):
            vals = [s[key] for s in self.series if isinstance(s.get(key), (int, float))]
            if vals:
                out[f"mean_{key}"] = round(sum(vals) / len(vals), 2)
                out[f"max_{key}"] = max(vals)
        if self.vllm_process_titles:
            out["vllm_processes_seen"] = sorted(self.vllm_process_titles)
        if self.errors:
            out["failed_samples"] = {k: v for k, v in self.failed.items() if v}
            out["errors"] = self.errors
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {"label": self.label, "platform": self.platform, "summary": self.summary(), "series": self.series}
        if self.samples_rapl:
            out["rapl_max_energy_range_uj"] = self.rapl_max_energy_range_uj
        return out


PANELS = (("cpu_percent", "CPU % (100 = one core)"), ("rss_mib", "resident memory (MiB)"),
          ("hbm_used_mb", "HBM used (MB)"), ("aicore_percent", "AICore (%)"))


def chart(telemetries: list[dict[str, Any]], path) -> str | None:
    """One PNG, one panel per metric that was sampled: CPU% and RSS of the vllm process tree, and on NPU HBM used
    and AICore % per chip; one line per recorded bench (and chip). None when nothing was sampled."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    tels = [t for t in telemetries if t.get("series")]
    if not tels:
        return None

    def keys_of(t, metric):
        # cpu metrics are keys themselves; npu metrics come as npu<id>_<chip>_<metric>
        return sorted({k for smp in t["series"] for k in smp
                       if k == metric or re.fullmatch(rf"npu\d+_\d+_{metric}", k)})

    panels = [(m, title) for m, title in PANELS if any(keys_of(t, m) for t in tels)]
    if not panels:  # e.g. only power samples: energy's, not a panel
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True, squeeze=False)
    for row, (ax, (metric, title)) in enumerate(zip(axes[:, 0], panels)):
        for t in tels:
            color = None
            for key in keys_of(t, metric):
                pts = [(smp["t_s"], smp[key]) for smp in t["series"] if isinstance(smp.get(key), (int, float))]
                chip = key[: -len(metric) - 1]
                label = " ".join(x for x in (t.get("label") or "", chip) if x)
                (line,) = ax.plot([a for a, _ in pts], [b for _, b in pts], label=label)
                color = color or line.get_color()
            # the measured window, apart from engine start-up (window_how says where its ends come from)
            if t.get("window_s") and color:
                ax.axvspan(*t["window_s"], color=color, alpha=0.12,
                           label=f"{t.get('label') or ''} measured".strip() if row == 0 else None)
        ax.set_ylabel(title, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since bench start")
    for ax in axes[:, 0]:
        labelled = [line for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")]
        if 0 < len(labelled) <= 8:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
