"""The Ascend environment's pins (tools/ascend/pins.sh, environment.yml) held against the Requires-Dist of the
wheels they install, as published on PyPI and recorded in tests/data/ascend/wheels/ (registry, file name, sha256 in
each file's header). Nothing is installed or downloaded here."""

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

WHEELS = ROOT / "tests" / "data" / "ascend" / "wheels"
PINS = ROOT / "tools" / "ascend" / "pins.sh"
ENVIRONMENT = ROOT / "environment.yml"
ARCHES = ("aarch64", "x86_64")


def read_pins(path: Path = PINS) -> dict[str, str]:
    pins = dict(re.findall(r"^([A-Z_]+)=(\S+)$", path.read_text(), re.M))
    missing = {"TORCH_VERSION", "TORCHVISION_VERSION", "TORCHAUDIO_VERSION", "TORCH_NPU_VERSION", "VLLM_TAG",
               "VLLM_ASCEND_VERSION", "TORCH_INDEX_URL"} - set(pins)
    assert not missing, f"{path} lacks {sorted(missing)}"
    return pins


def read_metadata(path: Path) -> dict:
    """{'source': {registry, filename, sha256}, 'name', 'version', 'requires': [Requirement]} of a recorded file."""
    text = path.read_text()
    source = dict(re.findall(r"^# (registry|filename|sha256): (.+)$", text, re.M))
    assert set(source) == {"registry", "filename", "sha256"}, f"{path.name}: header must say registry, filename, sha256"
    assert re.fullmatch(r"[0-9a-f]{64}", source["sha256"]), f"{path.name}: sha256 {source['sha256']!r}"
    fields = re.findall(r"^(Name|Version|Requires-Dist): (.+)$", text, re.M)
    return {"source": source, "name": next(v for k, v in fields if k == "Name"),
            "version": next(v for k, v in fields if k == "Version"),
            "requires": [Requirement(v) for k, v in fields if k == "Requires-Dist"]}


def wheel(dist: str, version: str, arch: str) -> dict:
    found = sorted(WHEELS.glob(f"{dist}-{version}-cp311-*{arch}.METADATA.txt"))
    assert found, f"no recorded METADATA for {dist} {version} on {arch} in {WHEELS}"
    meta = read_metadata(found[0])
    assert meta["version"] == version and meta["source"]["filename"].startswith(f"{dist}-{version}-")
    return meta


def installed_set(pins: dict[str, str]) -> dict[str, str]:
    """What install.sh puts in the environment, by canonical distribution name."""
    return {"torch": pins["TORCH_VERSION"], "torchvision": pins["TORCHVISION_VERSION"],
            "torchaudio": pins["TORCHAUDIO_VERSION"], "torch-npu": pins["TORCH_NPU_VERSION"],
            "vllm-ascend": pins["VLLM_ASCEND_VERSION"]}


def unmet(meta: dict, versions: dict[str, str]) -> list[str]:
    """Requirements of `meta` on the distributions in `versions` that those versions do not meet."""
    out = []
    for req in meta["requires"]:
        name = canonicalize_name(req.name)
        if name in versions and not req.specifier.contains(Version(versions[name]), prereleases=True):
            out.append(f"{meta['name']} {meta['version']} requires {req}, the pin is {versions[name]}")
    return out


def pin_problems(pins: dict[str, str]) -> list[str]:
    """Every way the pins fail the recorded wheels' metadata, on every architecture."""
    versions = installed_set(pins)
    problems = []
    for arch in ARCHES:
        for dist, version in (("vllm_ascend", pins["VLLM_ASCEND_VERSION"]), ("torch_npu", pins["TORCH_NPU_VERSION"])):
            found = sorted(WHEELS.glob(f"{dist}-{version}-cp311-*{arch}.METADATA.txt"))
            if not found:
                problems.append(f"{arch}: PyPI has no {dist} {version} wheel recorded (does that version exist?)")
                continue
            problems += [f"{arch}: {p}" for p in unmet(read_metadata(found[0]), versions)]
    return problems


def test_recorded_wheels_name_their_source():
    files = sorted(WHEELS.glob("*.METADATA.txt"))
    assert len(files) >= 5
    for path in files:
        meta = read_metadata(path)
        assert meta["source"]["registry"].startswith("PyPI")
        assert path.name == meta["source"]["filename"].removesuffix(".whl") + ".METADATA.txt"


def test_pins_meet_vllm_ascend_and_torch_npu_metadata_on_both_arches():
    assert pin_problems(read_pins()) == []


def test_the_seed_torch_npu_pin_fails_the_check(tmp_path):
    # The seed's torch_npu 2.9.0.post1(+gitee7ba04) is not what vllm-ascend 0.18.0 asks for (==2.9.0), and PyPI has
    # no 2.9.0.post1 wheel: the check must say so.
    seed = tmp_path / "pins.sh"
    seed.write_text(PINS.read_text().replace("TORCH_NPU_VERSION=2.9.0", "TORCH_NPU_VERSION=2.9.0.post1"))
    problems = pin_problems(read_pins(seed))
    assert any("requires torch-npu==2.9.0, the pin is 2.9.0.post1" in p for p in problems)
    assert any("no torch_npu 2.9.0.post1 wheel" in p for p in problems)


def test_a_cuda_torch_pin_fails_torch_npu_on_x86_64(tmp_path):
    # torch-npu's x86_64 wheel wants the CPU build exactly; PyPI's plain 2.9.0 (CUDA) is not it.
    plain = tmp_path / "pins.sh"
    plain.write_text(PINS.read_text().replace("TORCH_VERSION=2.9.0+cpu", "TORCH_VERSION=2.9.0"))
    assert pin_problems(read_pins(plain)) == [
        "x86_64: torch_npu 2.9.0 requires torch==2.9.0+cpu, the pin is 2.9.0"]


@pytest.mark.parametrize("arch", ARCHES)
def test_pypi_vllm_wheel_is_why_vllm_is_built_from_source(arch):
    # The PyPI vllm 0.18.0 wheel pins torch 2.10.0: it cannot sit beside torch-npu 2.9.0, so install.sh builds
    # vLLM's v0.18.0 source with VLLM_TARGET_DEVICE=empty instead, as vllm-ascend's installation guide does.
    (path,) = WHEELS.glob("vllm-0.18.0-*.METADATA.txt")
    pins = read_pins()
    assert unmet(read_metadata(path), installed_set(pins)) != []
    assert pins["VLLM_TAG"] == "v" + read_metadata(path)["version"]
    assert wheel("vllm_ascend", pins["VLLM_ASCEND_VERSION"], arch)["version"] == read_metadata(path)["version"]


def test_install_script_uses_the_pins_and_builds_vllm_with_empty_target():
    script = (ROOT / "tools" / "ascend" / "install.sh").read_text()
    assert 'source "$here/pins.sh"' in script
    assert re.search(r"VLLM_TARGET_DEVICE=empty .*install -e \"\$src/vllm\[audio\]\"", script)
    for var in ("TORCH_VERSION", "TORCHVISION_VERSION", "TORCHAUDIO_VERSION", "TORCH_NPU_VERSION", "VLLM_TAG",
                "VLLM_ASCEND_VERSION", "TORCH_INDEX_URL"):
        assert f"${var}" in script or f"${{{var}}}" in script, f"install.sh does not use {var}"
    # no version is written twice
    assert not re.search(r"==\d", script), "install.sh hard-codes a version; pins.sh is the one place"


def test_environment_yml_kit_libraries_meet_vllm_ascend():
    env = yaml.safe_load(ENVIRONMENT.read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {canonicalize_name(Requirement(x).name): str(Requirement(x).specifier).removeprefix("==")
              for x in pip_section if not x.startswith("-")}
    # torch, vLLM and the Ascend packages are install.sh's: one resolution cannot hold them (README "Ascend host")
    assert not {"torch", "torch-npu", "vllm", "vllm-ascend"} & set(pinned)
    pins = read_pins()
    for arch in ARCHES:
        assert unmet(wheel("vllm_ascend", pins["VLLM_ASCEND_VERSION"], arch), pinned) == []


def test_environment_check_catches_a_conflicting_kit_pin():
    meta = wheel("vllm_ascend", read_pins()["VLLM_ASCEND_VERSION"], "aarch64")
    assert unmet(meta, {"numpy": "2.3.5"}) == ["vllm_ascend 0.18.0 requires numpy<2.0.0, the pin is 2.3.5"]


def numpy_problems(kit_pins: dict[str, str]) -> list[str]:
    """Kit libraries whose recorded wheel (Python 3.11) needs a numpy that vllm-ascend's numpy<2.0.0 forbids."""
    from packaging.specifiers import SpecifierSet

    allowed = next(r.specifier for r in wheel("vllm_ascend", read_pins()["VLLM_ASCEND_VERSION"], "aarch64")["requires"]
                   if canonicalize_name(r.name) == "numpy")
    problems = []
    for name, version in kit_pins.items():
        found = sorted(WHEELS.glob(f"{name.replace('-', '_')}-{version}-*.METADATA.txt"))
        for path in found:
            for req in read_metadata(path)["requires"]:
                if canonicalize_name(req.name) != "numpy" or (req.marker and not req.marker.evaluate(
                        {"python_version": "3.11", "extra": ""})):
                    continue
                both = SpecifierSet(str(allowed)) & req.specifier
                if not any(both.contains(v) for v in ("1.26.4", "1.25.2")):  # the last numpy 1.x releases
                    problems.append(f"{name} {version} requires {req}, vllm-ascend requires numpy{allowed}")
    return problems


def test_kit_libraries_accept_the_numpy_vllm_ascend_needs():
    env = yaml.safe_load(ENVIRONMENT.read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {canonicalize_name(Requirement(x).name): str(Requirement(x).specifier).removeprefix("==")
            for x in pip_section if not x.startswith("-")}
    checked = [n for n in pins if sorted(WHEELS.glob(f"{n.replace('-', '_')}-{pins[n]}-*.METADATA.txt"))]
    assert set(checked) >= {"pandas", "matplotlib"}  # the kit's numpy users have their metadata recorded
    assert numpy_problems(pins) == []
    assert numpy_problems({"pandas": "3.1.1"}) == [
        'pandas 3.1.1 requires numpy>=2.0.2; python_version < "3.14", vllm-ascend requires numpy<2.0.0']
