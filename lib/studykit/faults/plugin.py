"""The `vllm.general_plugins` entry point: vLLM calls `register()` in each of its processes (API server, engine
core, workers). Inert unless STUDYKIT_FAULT names a fault; a name the kit does not know stops vLLM, so a typo never
yields a run that is silently clean."""

from __future__ import annotations

import logging
import os

from studykit.faults.catalog import ENV_VAR, FaultError, parse


def _logger() -> logging.Logger:
    # a child of vLLM's logger, so the line carries vLLM's prefix (process name, pid) in the server log
    return logging.getLogger("vllm.studykit.faults")


def register() -> None:
    text = os.environ.get(ENV_VAR)
    try:
        spec = parse(text)
    except FaultError as err:
        _logger().error("%s", err)
        raise
    if spec is None:
        return
    from studykit.faults.patches import install

    install(spec)
    _logger().warning("%s", spec.log_line())
