"""Synthetic IDX files: small, valid MNIST-shaped data sets built in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_fonts
from training.config import TrainConfig
from training.data import MnistSplit, load_split
from training.fonts import find_fonts
from training.run import TrainResult
from training.train import fit

# A run that takes a few seconds: enough to learn far beyond chance, far from the real target.
SMALL = TrainConfig(epochs=3, batch_size=64, limit_train=2000, val_size=400, seed=3)

STEMS = {
    "train-images-idx3-ubyte": "images",
    "train-labels-idx1-ubyte": "labels",
    "t10k-images-idx3-ubyte": "images",
    "t10k-labels-idx1-ubyte": "labels",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x000008DD, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim])
    sizes = b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + sizes + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gzipped: bool) -> str:
    """Write IDX (gzipped when asked); return sha256 of the uncompressed content."""
    content = idx_bytes(array)
    if gzipped:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def synthetic_mnist(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A data dir with all four files (train gzipped, test raw) and their checksums."""
    rng = np.random.default_rng(0)
    checksums = {}
    for stem, kind in STEMS.items():
        count = 50 if stem.startswith("train") else 20
        if kind == "images":
            array = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        else:
            array = rng.integers(0, 10, size=count, dtype=np.uint8)
        checksums[stem] = write_idx(tmp_path / stem, array, gzipped=stem.startswith("train"))
    return tmp_path, checksums


@pytest.fixture(scope="session")
def train_split(mnist_dir: Path) -> MnistSplit:
    return load_split(mnist_dir, train=True)


@pytest.fixture(scope="session")
def test_split(mnist_dir: Path) -> MnistSplit:
    return load_split(mnist_dir, train=False)


@pytest.fixture(scope="session")
def tiny_result(train_split: MnistSplit, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A model trained for seconds on 1 600 images; shared by the training and export tests."""
    return fit(SMALL, train_split, tmp_path_factory.mktemp("tiny-run"), progress=False)


@pytest.fixture
def training_fonts() -> list[Path]:
    """The font files training draws printed digits and glyphs from (scripts/test-tools.sh
    installs them); a plain skipif let CI pass with these tests skipped."""
    found = find_fonts()
    require_fonts(found, ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"))
    return found
