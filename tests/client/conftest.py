"""A real app on uvicorn (127.0.0.1, ephemeral port) and folders of real MNIST image files."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.server import running_service
from tests.conftest import tiny_model_env


def mnist_test_images(mnist_dir: Path, count: int) -> list[tuple[np.ndarray, int]]:
    """The first ``count`` MNIST test images (28x28 uint8, white on black) and labels."""

    def read(name: str, offset: int) -> np.ndarray:
        return np.frombuffer(gzip.open(mnist_dir / f"{name}.gz").read(), np.uint8, offset=offset)

    images = read("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = read("t10k-labels-idx1-ubyte", 8)
    return [(images[index], int(labels[index])) for index in range(count)]


@pytest.fixture(scope="module")
def service_url(tiny_onnx: Path) -> Iterator[str]:
    """The app on the tiny model: answers are meaningless but the same as /predict gives."""
    env = {**tiny_model_env(tiny_onnx), "DIGITS_ACCESS_LOG": "false"}
    with running_service(env) as server:
        yield server.url


@pytest.fixture
def digit_folder(tmp_path: Path, mnist_dir: Path) -> Path:
    """12 digit images, dark ink on light paper, spread over nested folders, plus non-images
    that a folder scan must skip (a text file, a hidden folder)."""
    root = tmp_path / "scans"
    for index, (pixels, label) in enumerate(mnist_test_images(mnist_dir, 12)):
        folder = root / ("batch-a" if index < 6 else "batch-b/nested")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if index % 3 else ".jpg"
        Image.fromarray(255 - pixels).save(folder / f"{index:02d}-label{label}{suffix}")
    (root / "README.txt").write_text("not an image")
    (root / ".thumbnails").mkdir()
    Image.new("L", (28, 28), 255).save(root / ".thumbnails" / "skip.png")
    return root
