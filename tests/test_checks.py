"""The generic check helpers (studykit.checks); each stage's own checks are tested in tests/stages/."""

from __future__ import annotations

from studykit import checks


def test_argv_has_reads_the_last_value_and_names_what_differs():
    argv = ["--num-prompts", "5", "--num-prompts", "7", "--save-result"]
    ok = checks.argv_has("serve", argv, {"--num-prompts": 7, "--save-result": None}, where="bench: ")
    assert (ok.id, ok.subject, ok.status) == ("serve.command_matches_params", "bench", "passed")
    bad = checks.argv_has("serve", argv, {"--num-prompts": 5, "--seed": 0})
    assert bad.status == "failed" and bad.actual == {"--num-prompts": "7", "--seed": "missing"}


def test_failed_lists_only_failed_checks():
    out = [checks.check("x.a", "a", True, "fine"), checks.check("x.b", "b", False, "wrong"),
           checks.not_run("x.c", "c", "no input")]
    assert checks.failed(out) == ["check failed: b: wrong"]
