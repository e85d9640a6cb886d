"""The host's RAPL energy counters (Linux powercap): which package domains there are, whether they can be read,
their values now. studykit.engine.telemetry samples them; studykit.energy turns them into joules."""

from __future__ import annotations

import re
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
RAPL_KEY = re.compile(r"^rapl_(?P<domain>.+)_uj$")
_PACKAGE = re.compile(r"^intel-rapl:\d+$")


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


def rapl_key(domain: str) -> str:
    """A RAPL domain's counter in a telemetry sample."""
    return f"rapl_{domain}_uj"


def rapl_max_ranges(root: Path = POWERCAP) -> dict[str, int]:
    """max_energy_range_uj of each package domain (where its counter wraps to 0); a domain whose range cannot be
    read is left out (a wrap of its counter is then an EnergyError, not a guess)."""
    out = {}
    for name, d in rapl_domains(root).items():
        try:
            out[name] = int((d / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue
    return out
