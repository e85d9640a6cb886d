"""Resource telemetry while a bench runs: CPU% and resident memory of the kit's child process tree (the vllm
server and the bench process and all their workers), sampled every ~0.5 s by a background thread.

On an Ascend host `npu-smi info` is sampled instead (HBM used, AICore utilisation per chip).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

import psutil


class Telemetry:
    """`with Telemetry(platform) as tel: ...` then `tel.series` (list of flat samples) and `tel.summary()`."""

    def __init__(self, platform: str = "cpu", interval_s: float = 0.5, root_pid: int | None = None,
                 label: str = ""):
        self.platform = platform
        self.interval_s = interval_s
        self.root = psutil.Process(root_pid or os.getpid())
        self.label = label
        self.series: list[dict[str, Any]] = []
        self.errors: list[str] = []
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
            try:
                sample = self._npu_sample() if self.platform == "npu" else self._cpu_sample()
                sample = {"t_s": round(time.monotonic() - self._t0, 3), **sample}
                self.series.append(sample)
            except Exception as err:  # telemetry must never break a measurement
                if len(self.errors) < 5:
                    self.errors.append(f"{type(err).__name__}: {err}")
            self._stop.wait(self.interval_s)

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

    def _npu_sample(self) -> dict[str, Any]:
        from .ascend import parse_npu_smi_info

        text = subprocess.run(["npu-smi", "info"], capture_output=True, text=True, timeout=10).stdout
        chips = parse_npu_smi_info(text)
        out: dict[str, Any] = {}
        for i, chip in enumerate(chips):
            for key in ("hbm_used_mb", "aicore_percent", "power_w"):
                if key in chip:
                    out[f"npu{chip.get('npu_id', i)}_{chip.get('chip_id', 0)}_{key}"] = chip[key]
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": len(self.series), "interval_s": self.interval_s}
        for key in sorted({k for s in self.series for k in s if k != "t_s"}):
            vals = [s[key] for s in self.series if isinstance(s.get(key), (int, float))]
            if vals:
                out[f"mean_{key}"] = round(sum(vals) / len(vals), 2)
                out[f"max_{key}"] = max(vals)
        if self.vllm_process_titles:
            out["vllm_processes_seen"] = sorted(self.vllm_process_titles)
        if self.errors:
            out["errors"] = self.errors
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "platform": self.platform, "summary": self.summary(), "series": self.series}


def chart(telemetries: list[dict[str, Any]], path) -> str | None:
    """One PNG: CPU% and RSS (or NPU keys) over time for each recorded bench."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    tels = [t for t in telemetries if t.get("series")]
    if not tels:
        return None
    keys = [k for k in tels[0]["series"][0] if k not in ("t_s", "processes")]
    keys = [k for k in keys if k != "system_cpu_percent"][:2] or keys[:2]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.6 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for t in tels:
            ax.plot([s["t_s"] for s in t["series"]], [s.get(key) for s in t["series"]], label=t.get("label") or "")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since bench start")
    if len(tels) <= 8:
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
