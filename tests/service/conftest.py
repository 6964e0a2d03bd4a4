"""Shared by the accuracy tests: a sample of real MNIST test digits and an app on the shipped
model, plus sending images through /predict/batch as a client would."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
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


def mnist_test_sample(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The accuracy tests' fixed sample of MNIST test: the same digits in every run and in
    scripts/not_a_digit_tradeoff.py, so their figures compare."""
    images = _idx(mnist_dir / "t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28)
    labels = _idx(mnist_dir / "t10k-labels-idx1-ubyte", 8)
    chosen = np.random.default_rng(SEED).choice(len(labels), SAMPLE, replace=False)
    return images[chosen], labels[chosen]


@pytest.fixture(scope="module")
def mnist_sample(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return mnist_test_sample(mnist_dir)


@pytest.fixture(scope="module")
def accuracy_client(shipped_model: Path) -> Iterator[TestClient]:
    settings = Settings(model_path=shipped_model, max_batch_files=CHUNK)
    with TestClient(create_app(settings)) as client:
        yield client


REFUSED = -1  # the digit of an image answered not_a_digit: wrong, whatever it showed
_BEST_GUESS = re.compile(r"best guess is (\d)")


@dataclass(frozen=True)
class Served:
    """What /predict/batch answered for each image: the digit (REFUSED for not_a_digit), the
    best guess the refusal named (the digit otherwise), and each answer's confidence."""

    digits: np.ndarray
    guesses: np.ndarray
    confidences: np.ndarray
    probabilities: np.ndarray  # (N, 10); rows of refused images are zero

    def lost_points(self, labels: np.ndarray) -> float:
        """Accuracy points lost to refusals: right best guesses answered not_a_digit."""
        return float(((self.digits == REFUSED) & (self.guesses == labels)).mean() * 100)


def served_answers(client: TestClient, images: list[bytes]) -> Served:
    digits: list[int] = []
    guesses: list[int] = []
    probabilities: list[list[float]] = []
    for start in range(0, len(images), CHUNK):
        files = [
            ("files", (f"{i}", data, "image/*"))
            for i, data in enumerate(images[start : start + CHUNK])
        ]
        response = client.post("/predict/batch", files=files)
        assert response.status_code == 200, response.text
        for entry in response.json()["predictions"]:
            if "error" in entry:
                assert entry["error"]["code"] == "not_a_digit", entry
                guess = _BEST_GUESS.search(entry["error"]["message"])
                assert guess is not None, entry
                digits.append(REFUSED)
                guesses.append(int(guess.group(1)))
                probabilities.append([0.0] * 10)
                continue
            digits.append(entry["digit"])
            guesses.append(entry["digit"])
            probabilities.append(entry["probabilities"])
    table = np.array(probabilities).reshape(-1, 10)
    return Served(np.array(digits), np.array(guesses), table.max(axis=1), table)


def served_digits(client: TestClient, images: list[bytes]) -> np.ndarray:
    """The digit answered for each image; REFUSED (never right) for not_a_digit."""
    return served_answers(client, images).digits
