"""The command plan: every command a stage runs, built once.

Each stage's `plan(...)` (studykit.stages.<stage>.stage) returns its Steps; the stage's notebook executes exactly those Steps
(servers through StageContext.start_server, commands through StageContext.run_step) and `studykit run --dry-run`
prints them. So what the dry run shows is what runs, by construction, and a test compares the dry run with
commands.jsonl of a real run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studykit.evidence.journal import display_command

PORT_PLACEHOLDER = "PORT"  # server.port: auto picks a free port at run time
RUN_DIR_PLACEHOLDER = "RUN_DIR"


@dataclass
class Step:
    stage: str
    label: str
    kind: str  # command (runs to completion) | server (start, wait for /health, stop) | http | python
    argv: list[str] = field(default_factory=list)
    text: str = ""  # http/python steps: the request or call, copy-pasteable; else a note shown for argv
    env: dict[str, str] = field(default_factory=dict)  # added to the platform environment for this command

    @property
    def command(self) -> str:
        return self.text or display_command(self.argv, self.env)



def base_url(host: str, port: int | str) -> str:
    return f"http://{host}:{port}"


def find(steps: list[Step], label: str) -> Step:
    for s in steps:
        if s.label == label:
            return s
    raise KeyError(f"no step {label!r} in the plan; steps: {[s.label for s in steps]}")
