"""Shared by the accuracy tests: a sample of real MNIST test digits and an app on the shipped
model, plus sending images through /predict/batch as a client would."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

SAMPLE = 1000
SEED = 20261125
CHUNK = 64


def _idx(path: Path, offset: int) -> np.ndarray:
    raw = path.read_bytes() if path.exists() else gzip.decompress(Path(f"{path}.gz").read_bytes())
    return np.frombuffer(raw, dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def mnist_sample(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _idx(mnist_dir / "t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = _idx(mnist_dir / "t10k-labels-idx1-ubyte", 8)
    chosen = np.random.default_rng(SEED).choice(len(labels), SAMPLE, replace=False)
    return images[chosen], labels[chosen]


@pytest.fixture(scope="module")
def accuracy_client(shipped_model: Path) -> Iterator[TestClient]:
    settings = Settings(model_path=shipped_model, max_batch_files=CHUNK)
    with TestClient(create_app(settings)) as client:
        yield client


def served_digits(client: TestClient, images: list[bytes]) -> np.ndarray:
    digits: list[int] = []
    for start in range(0, len(images), CHUNK):
        files = [
            ("files", (f"{i}", data, "image/*"))
            for i, data in enumerate(images[start : start + CHUNK])
        ]
        response = client.post("/predict/batch", files=files)
        assert response.status_code == 200, response.text
        for entry in response.json()["predictions"]:
            assert "error" not in entry, entry
            digits.append(entry["digit"])
    return np.array(digits)
