"""The shipped model behind a real server, and a folder laid out like a fresh clone's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import RunningService, running_service
from tests.conftest import require_binary
from tests.docs.examples import lay_out_clone


@pytest.fixture(scope="package")
def live(shipped_model: Path) -> Iterator[RunningService]:
    """`make serve`'s server (python -m service) on the shipped model, on a free port."""
    with running_service({"DIGITS_MODEL_PATH": str(shipped_model)}) as server:
        yield server


@pytest.fixture(scope="package")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_binary("curl")  # the docs' commands are curl lines (make test installs it)
    return lay_out_clone(tmp_path_factory.mktemp("clone"))
