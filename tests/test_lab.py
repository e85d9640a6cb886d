"""`make lab` starts JupyterLab as whoever runs it, root included (every Ascend container runs as root)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_starts_and_listens_on_loopback():
    port = free_port()
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_PORT={port}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if f"127.0.0.1:{port}/lab" in line:
                break
        out = "".join(seen)
        assert f"127.0.0.1:{port}/lab" in out, out[-3000:]
        assert "Running as root is not recommended. Use --allow-root" not in out
        for _ in range(30):  # the URL is printed as the server starts listening
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    break
            except ConnectionRefusedError:
                time.sleep(1)
        else:
            raise AssertionError(f"nothing listens on 127.0.0.1:{port}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
