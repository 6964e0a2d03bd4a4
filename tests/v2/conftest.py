"""A real uvicorn server on loopback serving a small model named like the shipped one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.conftest import build_onnx_model

MODEL_NAME = "lenet5"
MODEL_VERSION = "1.0.0"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LiveServer:
    url: str  # host:port, the form tritonclient wants
    base_url: str  # http://host:port
    model_path: Path


@pytest.fixture(scope="session")
def v2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    metadata = {"name": MODEL_NAME, "version": MODEL_VERSION}
    return build_onnx_model(tmp_path_factory.mktemp("v2") / "lenet5.onnx", metadata=metadata)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def v2_server(v2_model: Path) -> Iterator[LiveServer]:
    """uvicorn in a thread: tritonclient needs a real socket, not an ASGI transport."""
    settings = Settings(model_path=v2_model, access_log=False)
    port = _free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="v2-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield LiveServer(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", v2_model)
    server.should_exit = True
    thread.join(START_TIMEOUT_S)
