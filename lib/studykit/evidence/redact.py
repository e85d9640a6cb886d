"""Secrets never reach a run directory: every record the kit writes goes through here.

A variable is secret when its name contains TOKEN, KEY, SECRET or PASSWORD (any case). Its value is shown as
`***` wherever the kit records it (environment capture, commands.jsonl, results, reports, executed notebooks,
server logs). Only the record is redacted: the subprocess itself still receives the real value.

Two ways a secret is caught:
- by NAME, where the kit knows the name: an environment mapping, `NAME=value` before a command, an argv flag
  such as `--api-key value` / `--hf-token=value`;
- by VALUE, anywhere in text the kit writes: the values of secret-named variables of this process's
  environment (which the runner extends with the study's secret `server.env` entries, so its notebook
  kernels and their servers see the same set). Values shorter than MIN_SECRET_CHARS are left to the by-name
  rule: masking every "1" or "on" in a report would destroy it and protect nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

MASK = "***"
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD", re.IGNORECASE)
MIN_SECRET_CHARS = 6
# A command-line flag carries a secret when its last word is one: --api-key, --hf-token, --password. Not by
# substring as for variables: --max-num-batched-tokens and --tokenizer carry none.
SECRET_FLAG = re.compile(r"^--?(?:[\w-]*[-_])?(?:key|token|secret|password)$", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of env with the value of every secret-named variable replaced by ***."""
    return {k: (MASK if is_secret_name(k) and v else v) for k, v in env.items()}


def secret_values(environ: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-named variables worth searching text for, longest first (a value that contains
    another is replaced whole)."""
    found = set()
    for env in (os.environ if environ is None else environ, extra or {}):
        for k, v in env.items():
            if is_secret_name(k) and v and v != MASK and len(v) >= MIN_SECRET_CHARS:
                found.add(v)
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """text with every occurrence of each secret value replaced by ***; secrets default to secret_values()."""
    for value in secret_values() if secrets is None else secrets:
        if value and value in text:
            text = text.replace(value, MASK)
    return text


def redact_data(data: Any, secrets: Iterable[str] | None = None) -> Any:
    """redact_text applied to every string (keys included) of a JSON-like structure.

    By value only: result keys such as `max_tokens` or `tokenizer` name no secret."""
    secrets = secret_values() if secrets is None else list(secrets)
    if not secrets:
        return data

    def walk(v):
        if isinstance(v, str):
            return redact_text(v, secrets)
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v
    return walk(data)


def redact_argv(argv: list[str], secrets: Iterable[str] | None = None) -> list[str]:
    """argv for the record: the value after a secret-named flag (`--api-key V`, `--api-key=V`) and any
    known secret value are ***."""
    secrets = secret_values() if secrets is None else list(secrets)
    out: list[str] = []
    mask_next = False
    for arg in map(str, argv):
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if SECRET_FLAG.match(arg.split("=", 1)[0]):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + MASK)
            else:
                out.append(arg)
                mask_next = True
            continue
        out.append(redact_text(arg, secrets))
    return out


def redact_file(path: str | Path, secrets: Iterable[str] | None = None) -> bool:
    """Rewrite a text file the kit did not write itself (a server log, an executed notebook) with secret
    values masked. Returns whether anything was masked."""
    path = Path(path)
    secrets = secret_values() if secrets is None else list(secrets)
    if not secrets or not path.is_file():
        return False
    data = path.read_bytes()
    encoded = [(s.encode(), MASK.encode()) for s in secrets]
    if not any(s in data for s, _ in encoded):
        return False
    for s, m in encoded:
        data = data.replace(s, m)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.redact")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def export_study_secrets(server_env: Mapping[str, str], environ=os.environ) -> None:
    """Put the study's secret server.env values into this process's environment, so the kernels the runner
    starts know them (to mask them, and to pass them on when a resumed run's params.yaml holds ***)."""
    for k, v in server_env.items():
        if is_secret_name(k) and v and v != MASK:
            environ[k] = v


def unmask_env(env_extra: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a subprocess really gets: a *** left by a redacted params.yaml (a resumed run) is
    replaced by the variable's value in this process's environment."""
    environ = os.environ if environ is None else environ
    out = dict(env_extra)
    for k, v in env_extra.items():
        if v == MASK and is_secret_name(k):
            if not environ.get(k):
                raise ValueError(f"server.env {k} is redacted ({MASK}) in this run's params.yaml and {k} is not "
                                 f"set in the environment; allowed: export {k}=<the secret> and run again")
            out[k] = environ[k]
    return out
