"""`vllm serve` lifecycle: start in its own process group, wait for /health, always stop the whole group.

Three layers make sure no server outlives the kit: the context manager stops it on any exception
(KeyboardInterrupt included); the launcher asks Linux to TERM it if the kernel that started it dies;
and a pid file under `<run_dir>/pids/` lets the runner reap a group whose owner vanished.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

from studykit.evidence.journal import (ENDED_ALREADY, CommandLog, CommandRecord, display_command, group_alive, kill_group,
                       shown_env, spawn, stop_leader_first, utc_now)

# vLLM's API server needs a few seconds after SIGTERM to stop its engine core and workers (measured on CPU:
# well under 10 s); the group is signalled only after this.
SERVER_STOP_GRACE_S = 20.0


class ServerError(RuntimeError):
    """The server did not come up; the message carries the reason and the tail of its log."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def resolve_port(host: str, port: int | str) -> int:
    if port == "auto":
        return free_port(host)
    port = int(port)
    if not port_is_free(host, port):
        raise ServerError(f"port {port} on {host} is already in use; choose another port or use port: auto")
    return port


def log_tail(path: str | Path, lines: int = 40) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except FileNotFoundError:
        return "(no log written)"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_post_json(url: str, payload: dict, timeout: float = 600.0) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = err.read().decode("utf-8", "replace")
        raise RuntimeError(f"POST {url} answered HTTP {err.code}: {body[:2000]}") from None


class VllmServer:
    """Context manager around one `vllm serve` process group."""

    def __init__(self, argv: list[str], *, host: str, port: int, env_extra: dict[str, str],
                 log_path: str | Path, commands: CommandLog, label: str = "serve",
                 ready_timeout_s: float = 600.0, pid_dir: str | Path | None = None, keep_running: bool = False):
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.env_extra = dict(env_extra)
        self.log_path = Path(log_path)
        self.commands = commands
        self.label = label
        self.ready_timeout_s = ready_timeout_s
        self.pid_dir = Path(pid_dir) if pid_dir else None
        self.proc = None
        self.ready_seconds: float | None = None
        # A shared server outlives the `with` block (and the kernel) when nothing failed: the runner stops it.
        self.keep_running = keep_running
        self.on_ready: list = []
        self._t0 = None
        self._started_utc = None
        self._log_fh = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def command(self) -> str:
        return display_command(self.argv, self.env_extra)

    @property
    def shown_env(self) -> dict[str, str]:
        return shown_env(self.env_extra)

    @property
    def started_utc(self) -> str | None:
        return self._started_utc

    def __enter__(self) -> "VllmServer":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.keep_running and exc_type is None and self.proc is not None and self.proc.poll() is None:
            if self._log_fh:
                self._log_fh.close()  # the server keeps its own descriptor; ours is not needed any more
            return
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_path, "ab")
        self._started_utc = utc_now()
        self._t0 = time.monotonic()
        self.proc = spawn(self.argv, self.env_extra, self._log_fh, die_with_parent=not self.keep_running)
        if self.pid_dir:
            self.pid_dir.mkdir(parents=True, exist_ok=True)
            (self.pid_dir / f"{self.proc.pid}.pid").write_text(f"{self.proc.pid}\n{self.command}\n")

    def wait_ready(self) -> float:
        deadline = self._t0 + self.ready_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(
                    f"vllm serve exited with code {code} while starting ({self.label}).\n"
                    f"command: {self.command}\nlast lines of {self.log_path}:\n{log_tail(self.log_path)}")
            try:
                status, _ = http_get(self.base_url + "/health", timeout=2)
                if status == 200:
                    self.ready_seconds = round(time.monotonic() - self._t0, 3)
                    for hook in self.on_ready:
                        hook(self)
                    return self.ready_seconds
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(
                    f"vllm serve was not ready within {self.ready_timeout_s:.0f} s ({self.label}).\n"
                    f"command: {self.command}\nlast lines of {self.log_path}:\n{log_tail(self.log_path)}")
            time.sleep(0.5)

    def check_alive(self) -> None:
        """Raise with the log tail if the server died (e.g. mid-benchmark)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(
                f"vllm serve died with code {self.proc.returncode} ({self.label}).\n"
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        stop_signal_utc = None
        stopped_by = ENDED_ALREADY
        if self.proc.poll() is None or group_alive(pid):
            stop_signal_utc = utc_now()  # what the log scanner uses to tell shutdown messages from errors
            stopped_by = stop_leader_first(self.proc, SERVER_STOP_GRACE_S)
        try:
            self.proc.wait(timeout=5)
        except Exception:
            pass
        if self._log_fh:
            self._log_fh.close()
        if self.pid_dir:
            (self.pid_dir / f"{pid}.pid").unlink(missing_ok=True)
        self.commands.append(CommandRecord(
            stage=self.commands.stage, label=self.label, argv=self.argv, command=self.command,
            env=shown_env(self.env_extra), started_utc=self._started_utc, ended_utc=utc_now(),
            seconds=round(time.monotonic() - self._t0, 3), returncode=self.proc.returncode, is_vllm=True,
            log=str(self.log_path), extra={"ready_seconds": self.ready_seconds, "port": self.port,
                                           "stop_signal_utc": stop_signal_utc, "stopped_by": stopped_by}),
            self.env_extra)
        self.proc = None


def stop_group(pid: int) -> str:
    """Stop a server by its leader's pid when we hold no Popen for it (a shared server a stage kernel started):
    the API server first, the group after the grace period. Returns how it ended."""
    return stop_leader_first(None, SERVER_STOP_GRACE_S, pid=pid)


def reap_leftovers(pid_dir: str | Path, keep: set[int] = frozenset()) -> list[int]:
    """Kill every process group recorded under pid_dir whose owner did not stop it, but those in `keep`
    (shared servers still in use). Returns the pids killed."""
    killed = []
    pid_dir = Path(pid_dir)
    if not pid_dir.is_dir():
        return killed
    for f in pid_dir.glob("*.pid"):
        pid = int(f.read_text().split()[0])
        if pid in keep:
            continue
        if group_alive(pid):
            # Not our child any more (its owner is gone), so there is no Popen to collect its status.
            kill_group(pid)
            killed.append(pid)
        f.unlink(missing_ok=True)
    return killed

