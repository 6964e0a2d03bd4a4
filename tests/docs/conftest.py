"""The shipped model behind a real server, and a folder laid out like a fresh clone's."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import RunningService, running_service
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="package")
def live(shipped_model: Path) -> Iterator[RunningService]:
    """`make serve`'s server (python -m service) on the shipped model, on a free port."""
    with running_service({"DIGITS_MODEL_PATH": str(shipped_model)}) as server:
        yield server


@pytest.fixture(scope="package")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the docs' commands run: examples/ and .venv/bin/ as in a clone after `make`
    (.venv/bin is this interpreter's), and room for the files they write."""
    root = tmp_path_factory.mktemp("clone")
    (root / "examples").symlink_to(REPO_ROOT / "examples")
    (root / ".venv").mkdir()
    (root / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    return root
