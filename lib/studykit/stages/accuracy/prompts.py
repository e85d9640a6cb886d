"""Prompt sets for the accuracy stage: JSONL lines {"id", "text", "chat"}; checked before any model loads."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

BUILTIN_PREFIX = "builtin:"


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file, the line and what is wrong."""


def prompt_file_path(spec: str) -> Path:
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX):]
        path = Path(str(resources.files("studykit") / "data" / f"prompts-{name}.jsonl"))
        if not path.is_file():
            raise PromptFileError(f"prompt set {spec!r} is not shipped with the kit; allowed: 'builtin:default' or a file path")
        return path
    return Path(spec).expanduser()


def load_prompts(spec: str) -> list[dict]:
    path = prompt_file_path(spec)
    if not path.is_file():
        raise PromptFileError(f"prompt file {str(path)!r} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise PromptFileError(f"prompt file {str(path)!r} is not UTF-8 ({err.reason} at byte {err.start})") from None
    prompts, seen = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptFileError(f"{path}:{n}: not a JSON object ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise PromptFileError(f"{path}:{n}: each line needs a non-empty string \"text\"")
        extra = set(row) - {"id", "text", "chat"}
        if extra:
            raise PromptFileError(f"{path}:{n}: unknown keys {sorted(extra)}; allowed: id, text, chat")
        pid = str(row.get("id") or f"p{n}")
        if pid in seen:
            raise PromptFileError(f"{path}:{n}: id {pid!r} is used twice")
        seen.add(pid)
        prompts.append({"id": pid, "text": row["text"], "chat": bool(row.get("chat", True))})
    if not prompts:
        raise PromptFileError(f"prompt file {str(path)!r} has no prompts")
    return prompts


def tokenize_prompts(prompts: list[dict], tokenizer, max_model_len: int | None, max_new_tokens: int) -> list[dict]:
    """Token ids exactly as both engines will see them; too long for the model is an error, not a truncation."""
    out = []
    for p in prompts:
        if p["chat"]:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": p["text"]}],
                                                add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
                ids = ids["input_ids"]
        else:
            ids = tokenizer(p["text"], add_special_tokens=True)["input_ids"]
        ids = [int(i) for i in ids]
        if max_model_len and len(ids) + max_new_tokens > max_model_len:
            raise PromptFileError(f"prompt {p['id']!r} has {len(ids)} tokens; with {max_new_tokens} new tokens that "
                                  f"exceeds max_model_len {max_model_len}")
        out.append({**p, "prompt_ids": ids})
    return out
