"""Which stages of a run share a server, and the order that lets them use it back to back (studykit.engine.shared
keeps the servers themselves)."""

from __future__ import annotations

from pathlib import Path

from studykit.stages import stage_plan
from studykit.engine.shared import server_key
from studykit.plan import PORT_PLACEHOLDER, RUN_DIR_PLACEHOLDER

def server_users(study, stage_names: list[str], model_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """key -> [(stage, server label)] for every serve command used by two or more of the run's stages."""
    users: dict[str, list[tuple[str, str]]] = {}
    if not study.server.share:
        return {}
    for stage in stage_names:
        if stage == "report":
            continue
        for step in stage_plan(study, stage, model_dir, RUN_DIR_PLACEHOLDER, PORT_PLACEHOLDER):
            if step.kind == "server":
                users.setdefault(server_key(step.argv), []).append((stage, step.label))
    return {k: v for k, v in users.items() if len({s for s, _ in v}) > 1}


def execution_order(study, stage_names: list[str], model_dir: Path) -> list[str]:
    """The seed's order, except that stages sharing a server with an earlier stage run right after it."""
    groups = list(server_users(study, stage_names, model_dir).values())
    order: list[str] = []
    for stage in stage_names:
        if stage in order:
            continue
        order.append(stage)
        for users in groups:
            if stage in {s for s, _ in users}:
                order += [s for s in stage_names if s in {u for u, _ in users} and s not in order]
    return order
