"""A real uvicorn process (python -m service) on 127.0.0.1 and a free port, on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import RunningService, running_service
from tests.conftest import tiny_model_env


@pytest.fixture
def server(tiny_onnx: Path) -> Iterator[RunningService]:
    with running_service(tiny_model_env(tiny_onnx)) as running:
        yield running
