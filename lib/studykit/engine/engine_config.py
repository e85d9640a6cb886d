"""What vLLM says it used, read from its own start-up lines: the API server's `non-default args: {...}` (the
arguments that differ from vLLM's defaults, as it parsed them) and the engine core's `Initializing a V1 LLM engine
(vX) with config: k=v, ...` (the resolved engine config). Reruns are compared on these, and the kit's command can
be checked against them rather than against the params it was built from."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from studykit.engine import vllm_log

NON_DEFAULT = "non-default args: "
ENGINE_CONFIG = "with config: "


def _split_top_level(text: str) -> list[str]:
    """'a=1, b=[x, y], c={...}' -> ['a=1', 'b=[x, y]', 'c={...}']: commas inside brackets or quotes stay."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def parse_engine_config(message: str) -> dict[str, str]:
    """The k=v pairs after 'with config: ' (values kept as vLLM printed them)."""
    body = message.split(ENGINE_CONFIG, 1)[1]
    out = {}
    for part in _split_top_level(body):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def read_engine_config(log: str | Path) -> dict[str, Any]:
    """{"version", "non_default_args", "engine_config"} from the first of each line in a vLLM log; {} when none."""
    out: dict[str, Any] = {}
    try:
        lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        parsed = vllm_log.parse(line)
        message = parsed.message if parsed else line
        if NON_DEFAULT in message and "non_default_args" not in out:
            try:
                out["non_default_args"] = ast.literal_eval(message.split(NON_DEFAULT, 1)[1].strip())
            except (ValueError, SyntaxError):
                out["non_default_args_text"] = message.split(NON_DEFAULT, 1)[1].strip()
        elif ENGINE_CONFIG in message and "Initializing" in message and "engine_config" not in out:
            head = message.split(ENGINE_CONFIG, 1)[0]
            if "(v" in head:
                out["version"] = head.rsplit("(v", 1)[1].split(")", 1)[0]
            out["engine_config"] = parse_engine_config(message)
    return out
