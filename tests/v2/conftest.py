"""A real server on loopback serving a small model named like the shipped one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.server import running_service
from tests.conftest import build_onnx_model, tiny_model_env

MODEL_NAME = "lenet5"
MODEL_VERSION = "1.0.0"  # the model's own version, in its metadata
V2_VERSION = "1"  # how the V2 routes name it: an integer, as Triton's clients expect


@dataclass(frozen=True)
class LiveServer:
    url: str  # host:port, the form tritonclient wants
    base_url: str  # http://host:port
    model_path: Path


@pytest.fixture(scope="session")
def v2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    metadata = {"name": MODEL_NAME, "version": MODEL_VERSION}
    return build_onnx_model(tmp_path_factory.mktemp("v2") / "lenet5.onnx", metadata=metadata)


@pytest.fixture(scope="session")
def v2_server(v2_model: Path) -> Iterator[LiveServer]:
    """tritonclient needs a real socket, not an ASGI transport."""
    env = {**tiny_model_env(v2_model), "DIGITS_ACCESS_LOG": "false"}
    with running_service(env) as server:
        yield LiveServer(server.address, server.url, v2_model)


@pytest.fixture
def http(v2_server: LiveServer) -> Iterator[httpx.Client]:
    """A plain HTTP client of the live server, for what the wire carries byte by byte."""
    with httpx.Client(base_url=v2_server.base_url, timeout=30.0) as client:
        yield client
