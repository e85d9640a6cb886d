"""What differs between two runs, said before any number: the params, the packages (the full lock when the run
recorded one), the model files, the machine (CPU model, flags, cores, core binding; NPU chip, driver, firmware,
CANN, vllm-ascend commit) and its probes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def _diff(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    fa, fb = _flat(a), _flat(b)
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_params(root: Path) -> dict:
    """The run's params.yaml; {} when it is missing or unreadable."""
    try:
        return yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _packages(env: dict) -> dict[str, str]:
    """name -> version: the full lock (`pip freeze`) when recorded, else the kit's list of key packages."""
    lock = env.get("lock") or {}
    if lock.get("pip_freeze"):
        out = {}
        for line in lock["pip_freeze"]:
            name, sep, version = line.partition("==")
            out[name.lower()] = version if sep else line
        return out
    return {k: v for k, v in (env.get("packages") or {}).items() if v is not None}


def _binding(root: Path) -> set[str]:
    binds = set()
    try:
        for line in (root / "commands.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec.get("is_vllm") and (rec.get("env") or {}).get("VLLM_CPU_OMP_THREADS_BIND"):
                binds.add(rec["env"]["VLLM_CPU_OMP_THREADS_BIND"])
    except (OSError, ValueError):
        pass
    return binds


def engine_config(root: Path) -> dict:
    """What vLLM logged it used, from the run's first server log (`non-default args` and the engine config);
    the port is left out (each run picks a free one)."""
    from studykit.engine.engine_config import read_engine_config

    for log in sorted((root / "logs").glob("*.log")):
        found = read_engine_config(log)
        if found:
            args = {k: v for k, v in (found.get("non_default_args") or {}).items() if k != "port"}
            return {"version": found.get("version"), "non_default_args": args,
                    "engine_config": found.get("engine_config") or {}}
    return {}


def what_differs(a: str | Path, b: str | Path) -> dict[str, list[tuple[str, Any, Any]]]:
    """section -> [(key, value in A, value in B)] for every key that differs."""
    a, b = Path(a), Path(b)
    ea, eb = _json(a / "results" / "environment.json"), _json(b / "results" / "environment.json")
    out = {"params": _diff(run_params(a), run_params(b)),
           "packages": _diff(_packages(ea), _packages(eb)),
           "model files": _diff({r["file"]: r["sha256"] for r in (ea.get("model_files") or [])},
                                {r["file"]: r["sha256"] for r in (eb.get("model_files") or [])}),
           "machine": _diff({**(ea.get("hardware") or {}), "npu": ea.get("npu"), "os": ea.get("os"),
                             "cpu_binding": sorted(_binding(a))},
                            {**(eb.get("hardware") or {}), "npu": eb.get("npu"), "os": eb.get("os"),
                             "cpu_binding": sorted(_binding(b))}),
           "machine probe": _diff(ea.get("machine_probe") or {}, eb.get("machine_probe") or {}),
           "vllm engine": _diff(engine_config(a), engine_config(b))}
    for rows in out.values():
        rows[:] = [(k, x, y) for k, x, y in rows if k not in ("memory_available_bytes",)]
    return out


def probe_ratio(a: str | Path, b: str | Path, probe: str) -> float | None:
    """B's machine probe over A's (bandwidth GB/s or compute GFLOP/s); None when either run lacks it."""
    key = {"bandwidth": "bandwidth_gbps", "compute": "compute_gflops"}[probe]
    pa = (_json(Path(a) / "results" / "environment.json").get("machine_probe") or {}).get(key)
    pb = (_json(Path(b) / "results" / "environment.json").get("machine_probe") or {}).get(key)
    return pb / pa if isinstance(pa, (int, float)) and isinstance(pb, (int, float)) and pa else None
