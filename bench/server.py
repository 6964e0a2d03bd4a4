"""The service as a subprocess on loopback: start it, wait until it is ready, stop it.

The benchmark and every test that needs a real server start it here, exactly as
``python -m service`` runs it (or ``python -m bench.app``: the service plus the benchmark's
no-op route). A separate process, so a load generator or a test never shares its GIL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_POLL_S = 0.1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningService:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port, the form tritonclient wants."""
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the server wrote on stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (the server drains), a kill after ``timeout_s``; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_service(
    env: Mapping[str, str] | None = None, module: str = "service", cwd: Path = REPO_ROOT
) -> RunningService:
    """``python -m <module>`` with ``env`` (DIGITS_* settings) on a free port, once ready;
    ``cwd``: the checkout whose code runs (another one's for a side-by-side benchmark)."""
    port = free_port()
    environment = {**(env or {}), "DIGITS_HOST": "127.0.0.1", "DIGITS_PORT": str(port)}
    return _start([sys.executable, "-m", module], port, environment, "/readyz", cwd)


def start_peer(app: str, workers: int, env: Mapping[str, str] | None = None) -> RunningService:
    """A peer app (bench/peers) under plain uvicorn with ``workers`` processes, once ready."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return _start(command, port, dict(env or {}), "/healthz")


def _start(
    command: list[str], port: int, env: dict[str, str], ready: str, cwd: Path = REPO_ROOT
) -> RunningService:
    with tempfile.NamedTemporaryFile(prefix="digits-server-", suffix=".log", delete=False) as log:
        # The log goes to a file: a pipe nobody reads would fill up and stall the server.
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = RunningService(process, port, Path(log.name))
    try:
        _wait_ready(service, ready)
    except BaseException:
        service.stop()
        raise
    return service


@contextmanager
def running_service(
    env: Mapping[str, str] | None = None, module: str = "service", cwd: Path = REPO_ROOT
) -> Iterator[RunningService]:
    """``start_service`` for a ``with`` block; stopped (SIGTERM) at its end."""
    service = start_service(env, module, cwd)
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def running_peer(
    app: str, workers: int, env: Mapping[str, str] | None = None
) -> Iterator[RunningService]:
    """``start_peer`` for a ``with`` block; stopped (SIGTERM) at its end."""
    peer = start_peer(app, workers, env)
    try:
        yield peer
    finally:
        peer.stop()


def _wait_ready(service: RunningService, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(
                f"service exited with {service.process.returncode}:\n{_tail(service.log())}"
            )
        try:
            if httpx.get(f"{service.url}{path}", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(_POLL_S)
    raise RuntimeError(f"service not ready after {READY_TIMEOUT_S:.0f} s:\n{_tail(service.log())}")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])
