"""studykit: a reproducible study of how an LLM runs on vLLM on a given accelerator.

Packages: `stages` (one package per stage, found through the registry in stages/__init__.py), `engine` (vLLM
command lines, servers, launcher, logs, telemetry, roofline), `evidence` (the run directory: journal, results I/O,
redaction, environment capture), `weights` (checkpoints), `runner` (CLI, dry run, stage context), `report`,
`schema` (the results contract and metric ids). Nothing here imports a stage; the registry loads it by name.
"""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent  # lib/studykit: data/ lives here
KIT_ROOT = PACKAGE_DIR.parents[1]  # the checkout: params/, notebooks/, outputs/
