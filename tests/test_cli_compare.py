"""`studykit compare` and `studykit run --baseline` as a user types them: relative paths from any directory,
exit codes, the files written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "runs" / "golden"


def cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studykit.runner.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def two_runs(tmp_path: Path, slower_by: float = 0.0) -> None:
    """Two copies of the golden run with a quiet host's five latency iterations (tests/test_compare.py), B's
    scaled by 1 + slower_by."""
    from test_compare import QUIET_LATENCIES

    for name, factor in (("a", 1.0), ("b", 1 + slower_by)):
        shutil.copytree(GOLDEN, tmp_path / name, ignore=shutil.ignore_patterns("charts", "model", "notebooks"))
        path = tmp_path / name / "results" / "latency.json"
        data = json.loads(path.read_text())
        data["runs"]["latency"]["latencies"] = [x * factor for x in QUIET_LATENCIES]
        path.write_text(json.dumps(data))


def test_compare_by_relative_paths_writes_the_comparison(tmp_path):
    two_runs(tmp_path)
    r = cli("compare", "a", "b", "--out", "cmp", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "same within noise" in r.stdout
    for name in ("comparison.zh.md", "comparison.en.md", "comparison.html", "comparison.json"):
        assert (tmp_path / "cmp" / name).is_file()
    assert "无超出噪声的变化" in (tmp_path / "cmp" / "comparison.zh.md").read_text()


def test_a_regression_fails_only_when_asked(tmp_path):
    from studykit.compare.runs import SHIPPED_FLOORS

    # 20 points beyond the latency margin of the floor compare uses by default for CPU runs
    shipped = json.loads((SHIPPED_FLOORS / "noise-floor-cpu.json").read_text())
    two_runs(tmp_path, slower_by=shipped["metrics"]["latency.avg_latency"]["margin"] + 0.2)
    r = cli("compare", "a", "b", "--out", "cmp", cwd=tmp_path)
    assert r.returncode == 0 and "worse: Average latency" in r.stdout, r.stdout + r.stderr
    r = cli("compare", "a", "b", "--out", "cmp2", "--fail-on-regression", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr


def test_bad_run_directories_are_named(tmp_path):
    r = cli("compare", "nope", str(GOLDEN), cwd=tmp_path)
    assert r.returncode == 2 and "nope" in r.stderr and "no results/" in r.stderr
    r = cli("run", str(GOLDEN / "params.yaml"), "--baseline", "missing-run", cwd=tmp_path)
    assert r.returncode == 2 and "missing-run" in r.stderr and "not a run directory" in r.stderr


def test_a_bad_noise_floor_file_is_named_before_anything_runs(tmp_path):
    two_runs(tmp_path)
    (tmp_path / "floor.json").write_text('{"metrics": {"latency.avg_latency": {"cv": 0.04}}}')  # no margin
    for args in (["compare", "a", "b", "--noise-floor", "floor.json"],
                 ["compare", "a", "b", "--noise-floor", "absent.json"],
                 ["run", str(GOLDEN / "params.yaml"), "--baseline", "a", "--noise-floor", "absent.json"]):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"--noise-floor {tmp_path / args[-1]} is not a noise floor file" in r.stderr
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.glob("compare-*"))
