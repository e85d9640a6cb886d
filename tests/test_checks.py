"""Every check the kit reports can fail: each is fed a real recorded result (passes) and a wrong one (fails);
a check without its input is `not_run` with the reason, never passed."""

from __future__ import annotations

from pathlib import Path

from studykit import checks

DATA = Path(__file__).parent / "data" / "bench"


def by_name(results, fragment):
    found = [c for c in results if fragment in c["name"]]
    assert found, f"no check named like {fragment!r} in {[c['name'] for c in results]}"
    return found


def statuses(results):
    return {c["name"]: c["status"] for c in results}


def test_argv_has():
    argv = ["--num-prompts", "5", "--num-prompts", "7", "--save-result"]
    assert checks.argv_has(argv, {"--num-prompts": 7, "--save-result": None})["status"] == "passed"
    bad = checks.argv_has(argv, {"--num-prompts": 5, "--seed": 0})
    assert bad["status"] == "failed" and bad["actual"] == {"--num-prompts": "7", "--seed": "missing"}
