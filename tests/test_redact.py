"""Secrets are *** in everything the kit records, and the subprocess still gets the real value. (A real run with
canary secrets, none of which reaches a file of it: the session's default run, test_default_run_e2e.)"""

import json
import sys

import pytest

from studykit.evidence.journal import CommandLog, display_command, read_commands
from studykit.evidence.environment import relevant_env
from studykit.evidence.redact import (MASK, redact_argv, redact_data, redact_env, redact_file, redact_text, secret_values,
                             unmask_env)
from studykit.evidence.rundir import write_json, write_text

CANARY = "canary-5e1f0c9a"


def test_secret_names_are_masked_in_env_by_name():
    env = {"HF_TOKEN": "a", "MODELSCOPE_API_TOKEN": "b", "my_api_key": "c", "DB_PASSWORD": "d", "X_SECRET": "e",
           "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "2"}
    assert redact_env(env) == {"HF_TOKEN": MASK, "MODELSCOPE_API_TOKEN": MASK, "my_api_key": MASK,
                               "DB_PASSWORD": MASK, "X_SECRET": MASK, "HF_HUB_OFFLINE": "1",
                               "VLLM_CPU_KVCACHE_SPACE": "2"}
    assert relevant_env({"HF_TOKEN": CANARY, "HF_HOME": "/h"}) == {"HF_HOME": "/h", "HF_TOKEN": MASK}


def test_values_are_masked_in_text_and_data():
    secrets = secret_values({"HF_TOKEN": CANARY, "SHORT_KEY": "1", "HF_HOME": "/not/secret/at/all"})
    assert secrets == [CANARY]  # a 1-char value would mask every "1"; a non-secret name is not searched
    assert redact_text(f"Authorization: Bearer {CANARY}.", secrets) == "Authorization: Bearer ***."
    data = {"max_tokens": 16, "tokenizer": "/m", "note": [f"x{CANARY}y"], CANARY: 1}
    assert redact_data(data, secrets) == {"max_tokens": 16, "tokenizer": "/m", "note": ["x***y"], MASK: 1}


def test_argv_flags_that_carry_secrets():
    argv = ["vllm", "serve", "/m", "--api-key", "k-123456", "--hf-token=t-123456", "--max-num-batched-tokens",
            "256", "--tokenizer", "/tok", "--served-model-name", f"a{CANARY}"]
    assert redact_argv(argv, [CANARY]) == ["vllm", "serve", "/m", "--api-key", MASK, f"--hf-token={MASK}",
                                           "--max-num-batched-tokens", "256", "--tokenizer", "/tok",
                                           "--served-model-name", f"a{MASK}"]


def test_writers_mask_secret_values_of_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    write_json(tmp_path / "r.json", {"error": f"401 for token {CANARY}", "n": 3})
    write_text(tmp_path / "r.md", f"| token | {CANARY} |\n")
    assert json.loads((tmp_path / "r.json").read_text()) == {"error": "401 for token ***", "n": 3}
    assert (tmp_path / "r.md").read_text() == "| token | *** |\n"


def test_command_journal_is_redacted_but_the_subprocess_gets_the_real_value(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", CANARY)
    seen = tmp_path / "seen.txt"
    code = f"import os; open({str(seen)!r}, 'w').write(os.environ['MY_API_KEY'] + ' ' + os.environ['MODELSCOPE_API_TOKEN'])"
    env_extra = {"MY_API_KEY": "server-secret-77", "VLLM_LOGGING_LEVEL": "INFO"}
    log = CommandLog(tmp_path, "deploy")
    rec = log.run([sys.executable, "-c", code, "--api-key", "server-secret-77"], label="child", env_extra=env_extra)
    assert rec.returncode == 0
    assert seen.read_text() == f"server-secret-77 {CANARY}"
    journal = (tmp_path / "commands.jsonl").read_text()
    assert "server-secret-77" not in journal and CANARY not in journal
    (written,) = read_commands(tmp_path)
    assert written["argv"][-2:] == ["--api-key", MASK]
    assert "MY_API_KEY='***'" in written["command"]
    assert "server-secret-77" not in display_command(["x"], env_extra)


def test_redacted_params_value_is_taken_from_the_environment_or_refused(monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "from-env-1234")
    assert unmask_env({"MY_API_KEY": MASK, "A": "b"}) == {"MY_API_KEY": "from-env-1234", "A": "b"}
    monkeypatch.delenv("MY_API_KEY")
    with pytest.raises(ValueError, match=r"server.env MY_API_KEY is redacted .*export MY_API_KEY"):
        unmask_env({"MY_API_KEY": MASK})


def test_redact_file_rewrites_only_when_a_secret_is_there(tmp_path):
    log = tmp_path / "serve.log"
    log.write_text(f"args: {{'api_key': '{CANARY}'}}\n")
    assert redact_file(log, [CANARY]) and log.read_text() == "args: {'api_key': '***'}\n"
    assert not redact_file(log, [CANARY])


def test_yaml_written_with_a_secret_stays_loadable(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setenv("MY_API_KEY", CANARY)
    write_text(tmp_path / "params.yaml", f"name: x\nserver:\n  env:\n    MY_API_KEY: {CANARY}\n")
    text = (tmp_path / "params.yaml").read_text()
    assert CANARY not in text
    assert yaml.safe_load(text) == {"name": "x", "server": {"env": {"MY_API_KEY": MASK}}}
