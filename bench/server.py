"""The service under test: a uvicorn subprocess on loopback, with the real settings.

A separate process, so the load generator, the in-process ONNX Runtime runs and the server
never share a GIL, and the server runs exactly as ``python -m service`` runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_POLL_S = 0.1


@dataclass(frozen=True)
class Server:
    base_url: str
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(_POLL_S)
    raise RuntimeError(f"service not ready after {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_service(env_overrides: dict[str, str]) -> Iterator[Server]:
    """Start the bench app (the service plus its no-op route); stop it with SIGTERM."""
    port = free_port()
    env = {**os.environ, **env_overrides, "DIGITS_HOST": "127.0.0.1", "DIGITS_PORT": str(port)}
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile(prefix="digits-bench-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        # The log goes to a file: a pipe nobody reads would fill up and stall the server.
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.app"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(process, base_url, log_path)
        yield Server(base_url, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
