"""Ascend host facts: `npu-smi info` (chips, HBM, AICore), CANN and driver versions, torch_npu / vllm-ascend.

The parsers take text, so they are tested on recorded outputs (tests/data/ascend/, sources in its README);
`capture_ascend()` runs them on the live host and never raises: a missing or broken piece becomes an
"error" entry in the capture, because an environment record must not stop a study.

Formats parsed:
- `npu-smi info`: a box table, two rows per chip. Row 1: `| NPU  Name | Health | Power(W) Temp(C) Hugepages |`,
  row 2: `| Chip [Phy-ID] | Bus-Id | AICore(%) Memory-Usage(MB) HBM-Usage(MB) |` ("used / total" pairs;
  the Phy-ID column exists on Atlas A3 hosts, where one NPU carries two chips). Then an optional process table.
- `ascend_toolkit_install.info` (CANN) and `driver/version.info`: `key=value` lines.
"""

from __future__ import annotations

import glob
import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

ASCEND_ROOT = Path("/usr/local/Ascend")


class AscendParseError(ValueError):
    """Text that should be npu-smi / CANN / driver output is not; the message says where it broke."""


# ---------------------------------------------------------------------------------------------- npu-smi info

_VERSION_RE = re.compile(r"npu-smi\s+(?P<tool>\S+)\s+Version:\s*(?P<version>\S+)")
_PAIR = r"(?P<{0}_used>\d+)\s*/\s*(?P<{0}_total>\d+)"
_ROW1_TAIL = re.compile(r"^(?P<power>[\d.]+|-|NA)\s+(?P<temp>-?\d+|-|NA)\s+" + _PAIR.format("hp") + r"$")
# 310P-style tables have no HBM column, hence the optional last pair.
_ROW2_TAIL = re.compile(r"^(?P<aicore>\d+|-|NA)\s+" + _PAIR.format("mem") + r"(?:\s+" + _PAIR.format("hbm") + r")?$")
_ROW1_HEAD = re.compile(r"^(?P<npu>\d+)\s+(?P<name>\S.*)$")
_ROW2_HEAD = re.compile(r"^(?P<chip>\d+)(?:\s+(?P<phy>\d+))?$")
_NO_PROC = re.compile(r"No running processes found in NPU\s+(?P<npu>\d+)")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _num(text: str) -> float | int | None:
    if text in ("-", "NA", ""):
        return None
    return float(text) if "." in text else int(text)


def parse_npu_smi_version(text: str) -> dict:
    m = _VERSION_RE.search(text or "")
    if not m:
        raise AscendParseError(f"no 'npu-smi X Version: Y' line in the npu-smi output; first line: {_first_line(text)!r}")
    return {"npu_smi_version": m["tool"], "version": m["version"]}


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:200]
    return "(empty)"


def _head(text: str, lines: int = 3) -> str:
    """The first non-empty lines, joined: npu-smi's dcmi errors put the reason on the second line."""
    found = [line.strip()[:200] for line in (text or "").splitlines() if line.strip()][:lines]
    return " / ".join(found) or "(empty)"


def parse_npu_smi_info(text: str) -> list[dict]:
    """Per-chip dicts from `npu-smi info`: npu_id, chip_id, phy_id (A3; 310P tables give device_id instead), name,
    health, power_w, temp_c, bus_id,
    aicore_percent, memory_used_mb / memory_total_mb, hbm_used_mb / hbm_total_mb (None where not shown),
    hugepages_used_pages / hugepages_total_pages. Raises AscendParseError naming the line that does not fit."""
    lines = (text or "").splitlines()
    header = next((i for i, l in enumerate(lines) if "Bus-Id" in l and "AICore" in l), None)
    if header is None:
        raise AscendParseError(
            f"not `npu-smi info` output (no 'Chip | Bus-Id | AICore(%)' header); it begins: {_head(text)!r}")
    # A3 tables name the second column of the chip row Phy-ID, 310P tables Device; A2 tables have none.
    second = "phy_id" if "Phy-ID" in lines[header] else "device_id" if "Device" in lines[header] else None
    chips: list[dict] = []
    pending: tuple[int, dict] | None = None
    for i in range(header + 1, len(lines)):
        line = lines[i]
        if not line.startswith("|"):
            continue
        if "Process id" in line or _NO_PROC.search(line):
            break  # the process table follows the device table
        cells = _cells(line)
        where = f"npu-smi info line {i + 1}: {line.strip()[:120]!r}"
        if not line.rstrip().endswith("|"):
            raise AscendParseError(f"{where}: row does not end with '|' (output cut short?)")
        if len(cells) < 3:
            raise AscendParseError(f"{where}: expected 3 '|' columns, found {len(cells)}")
        if pending is None:
            head, tail = _ROW1_HEAD.match(cells[0]), _ROW1_TAIL.match(cells[2])
            if not head or not tail:
                raise AscendParseError(f"{where}: expected 'NPU Name | Health | Power Temp Hugepages'")
            pending = (i, {"npu_id": int(head["npu"]), "name": head["name"].strip(), "health": cells[1],
                           "power_w": _num(tail["power"]), "temp_c": _num(tail["temp"]),
                           "hugepages_used_pages": int(tail["hp_used"]),
                           "hugepages_total_pages": int(tail["hp_total"])})
            continue
        head, tail = _ROW2_HEAD.match(cells[0]), _ROW2_TAIL.match(cells[2])
        if not head or not tail:
            column = {"phy_id": " Phy-ID", "device_id": " Device"}.get(second, "")
            raise AscendParseError(f"{where}: expected 'Chip{column} | Bus-Id | "
                                   "AICore(%) Memory-Usage(MB) HBM-Usage(MB)'")
        chip = pending[1]
        chip.update({"chip_id": int(head["chip"]), "phy_id": None,
                     **({second: int(head["phy"])} if second and head["phy"] else {}),
                     "bus_id": cells[1], "aicore_percent": _num(tail["aicore"]),
                     "memory_used_mb": int(tail["mem_used"]), "memory_total_mb": int(tail["mem_total"]),
                     "hbm_used_mb": int(tail["hbm_used"]) if tail["hbm_used"] else None,
                     "hbm_total_mb": int(tail["hbm_total"]) if tail["hbm_total"] else None})
        chips.append(chip)
        pending = None
    if pending is not None:
        raise AscendParseError(f"npu-smi info line {pending[0] + 1}: NPU {pending[1]['npu_id']} has its first row "
                               "but not the 'Chip | Bus-Id | AICore ...' row (output cut short?)")
    if not chips:
        raise AscendParseError("npu-smi info lists no chips (header found, no device rows)")
    return chips


def parse_npu_smi_processes(text: str) -> list[dict]:
    """Rows of the process table: npu_id, chip_id, pid, name, memory_mb. Empty when none is running."""
    lines = (text or "").splitlines()
    start = next((i for i, l in enumerate(lines) if "Process id" in l), None)
    if start is None:
        return []
    procs = []
    for line in lines[start + 1:]:
        if not line.startswith("|") or _NO_PROC.search(line):
            continue
        cells = _cells(line)
        ids = cells[0].split()
        if len(cells) >= 4 and len(ids) == 2 and all(x.isdigit() for x in ids) and cells[1].isdigit():
            procs.append({"npu_id": int(ids[0]), "chip_id": int(ids[1]), "pid": int(cells[1]), "name": cells[2],
                          "memory_mb": _num(cells[3])})
    return procs


def summarize_chips(chips: list[dict]) -> dict:
    names = sorted({c["name"] for c in chips})
    return {"chip_count": len(chips), "chip_model": names[0] if len(names) == 1 else names,
            "hbm_total_mb_per_chip": [c["hbm_total_mb"] for c in chips],
            "hbm_used_mb_per_chip": [c["hbm_used_mb"] for c in chips]}


# ------------------------------------------------------------------------------------ CANN / driver .info files

def parse_key_value_info(text: str, source: str = "<info>") -> dict[str, str]:
    """`key=value` lines (ascend_toolkit_install.info, driver version.info). Blank and '#' lines are skipped."""
    out: dict[str, str] = {}
    for n, line in enumerate((text or "").splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if "=" not in s:
            raise AscendParseError(f"{source} line {n}: expected key=value, got {s[:80]!r}")
        key, value = s.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise AscendParseError(f"{source} line {n}: {key.strip()[:40]!r} is not a key name")
        out[key.strip()] = value.strip()
    if not out:
        raise AscendParseError(f"{source} is empty")
    return out


def parse_cann_info(text: str, source: str = "ascend_toolkit_install.info") -> dict:
    kv = parse_key_value_info(text, source)
    if "version" not in kv:
        raise AscendParseError(f"{source}: no 'version=' line (keys found: {', '.join(sorted(kv))})")
    return {"version": kv["version"], "package_name": kv.get("package_name"), "innerversion": kv.get("innerversion"),
            "arch": kv.get("arch"), "path": kv.get("path")}


def parse_driver_info(text: str, source: str = "driver/version.info") -> dict:
    kv = parse_key_value_info(text, source)
    version = kv.get("package_version") or kv.get("Version")
    if not version:
        raise AscendParseError(f"{source}: no 'Version=' or 'package_version=' line (keys found: {', '.join(sorted(kv))})")
    return {"version": version, "innerversion": kv.get("Innerversion"), "ascendhal_version": kv.get("ascendhal_version"),
            "compatible_version_fw": kv.get("compatible_version_fw")}


def cann_info_candidates(root: Path = ASCEND_ROOT, environ=os.environ) -> list[Path]:
    """Where ascend_toolkit_install.info lives: `<toolkit>/<arch>-linux/` under ascend-toolkit/latest (CANN <= 8.3)
    or cann-<version>/ (CANN 8.5 installs to /usr/local/Ascend/cann-8.5.1), or wherever set_env.sh pointed."""
    bases = [environ.get("ASCEND_TOOLKIT_HOME"), environ.get("ASCEND_HOME_PATH"),
             str(root / "ascend-toolkit" / "latest"), str(root / "cann"), *sorted(glob.glob(str(root / "cann-*")))]
    found: list[Path] = []
    for base in filter(None, bases):
        for pattern in ("ascend_toolkit_install.info", "*/ascend_toolkit_install.info"):
            for p in sorted(glob.glob(os.path.join(base, pattern))):
                rp = Path(p).resolve()
                if rp not in found:
                    found.append(rp)
    return found


# ------------------------------------------------------------------------------------------------- detection

def detect_npu(which=shutil.which, find_spec=importlib.util.find_spec) -> dict:
    """Is this an Ascend host vLLM can use? torch_npu importable and npu-smi on PATH (or in the driver dir)."""
    npu_smi = which("npu-smi") or next((p for p in ("/usr/local/sbin/npu-smi", "/usr/local/bin/npu-smi")
                                        if Path(p).is_file()), None)
    torch_npu = find_spec("torch_npu") is not None
    reasons = []
    if not torch_npu:
        reasons.append("torch_npu is not importable (pip install torch-npu matching torch; source CANN's set_env.sh)")
    if not npu_smi:
        reasons.append("npu-smi not found (the Ascend driver is not installed on this host)")
    return {"available": not reasons, "torch_npu": torch_npu, "npu_smi": npu_smi, "reasons": reasons}


def run_npu_smi(npu_smi: str = "npu-smi", timeout: float = 30.0) -> str:
    proc = subprocess.run([npu_smi, "info"], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AscendParseError(f"`{npu_smi} info` exited {proc.returncode}: {_head(proc.stdout + proc.stderr)}")
    return proc.stdout


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def capture_ascend(root: Path = ASCEND_ROOT, npu_smi_text: str | None = None, environ=os.environ) -> dict:
    """Everything the report's environment table needs on an Ascend host. Never raises."""
    out: dict = {"errors": []}
    det = detect_npu()
    out["detected"] = det
    out["packages"] = {d: _version(d) for d in ("torch", "torch-npu", "vllm", "vllm-ascend", "modelscope")}
    try:
        if npu_smi_text is None and not det["npu_smi"]:
            raise AscendParseError("npu-smi not found on PATH or in /usr/local/sbin (no Ascend driver here)")
        text = npu_smi_text if npu_smi_text is not None else run_npu_smi(det["npu_smi"])
        chips = parse_npu_smi_info(text)
        out["npu_smi"] = {**parse_npu_smi_version(text), **summarize_chips(chips), "chips": chips,
                          "processes": parse_npu_smi_processes(text)}
    except (OSError, subprocess.SubprocessError, AscendParseError) as err:
        out["errors"].append(f"npu-smi: {err}")
    cann_files = cann_info_candidates(root, environ)
    if cann_files:
        try:
            out["cann"] = {**parse_cann_info(cann_files[0].read_text(errors="replace"), str(cann_files[0])),
                           "file": str(cann_files[0])}
        except (OSError, AscendParseError) as err:
            out["errors"].append(f"cann: {err}")
    else:
        out["errors"].append(f"cann: no ascend_toolkit_install.info under {root} (CANN not installed, "
                             "or set ASCEND_TOOLKIT_HOME by sourcing its set_env.sh)")
    driver = root / "driver" / "version.info"
    try:
        out["driver"] = {**parse_driver_info(driver.read_text(errors="replace"), str(driver)), "file": str(driver)}
    except (OSError, AscendParseError) as err:
        out["errors"].append(f"driver: {err}")
    return out
