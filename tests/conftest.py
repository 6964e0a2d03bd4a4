"""Fixtures every test package may use: where the real MNIST data lies, and external tools."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO_ROOT / "models" / "lenet5.onnx"


def _default_mnist_dir() -> Path:
    return Path(os.environ.get("DIGITS_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST IDX files; CI always has them in ../shared, so absence is a failure."""
    path = _default_mnist_dir()
    if not (path / "t10k-images-idx3-ubyte.gz").exists() and not (
        path / "t10k-images-idx3-ubyte"
    ).exists():
        pytest.fail(f"MNIST data not found in {path}; set DIGITS_DATA_DIR")
    return path


def require_binary(name: str) -> str:
    """Path of an external tool a test needs (prometheus, chromium, podman...).

    Locally a missing tool skips the test; under CI (CI=true) it fails, because `.ci/run`
    installs every tool and a silently skipped check must never pass for a green build.
    """
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
