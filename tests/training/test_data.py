"""IDX reading and verification on small synthetic files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import idx_bytes, write_idx
from training import data
from training.data import DataError, load_idx, load_split


@pytest.mark.parametrize("gzipped", [True, False])
def test_reads_gzipped_and_raw(tmp_path: Path, gzipped: bool) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    sha = write_idx(tmp_path / "x-images", images, gzipped=gzipped)
    loaded = load_idx(tmp_path, "x-images", expected_ndim=3, sha256=sha)
    assert loaded.shape == (3, 28, 28)
    np.testing.assert_array_equal(loaded, images)


def test_prefers_gz_and_needs_neither_checksum_entry(tmp_path: Path) -> None:
    labels = np.array([1, 2, 3], dtype=np.uint8)
    write_idx(tmp_path / "y", labels, gzipped=True)
    (tmp_path / "y").write_bytes(b"not idx at all")  # the raw one would fail
    np.testing.assert_array_equal(load_idx(tmp_path, "y", expected_ndim=1), labels)


def test_wrong_magic_names_file(tmp_path: Path) -> None:
    content = bytearray(idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))
    content[2] = 0x0D  # float32 type code instead of uint8
    (tmp_path / "x").write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"x: wrong magic number 0x00000d03"):
        load_idx(tmp_path, "x", expected_ndim=3)


def test_labels_file_given_as_images_is_wrong_magic(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros(5, dtype=np.uint8), gzipped=False)
    with pytest.raises(DataError, match="wrong magic number 0x00000801"):
        load_idx(tmp_path, "x", expected_ndim=3)


def test_truncated_raw_file(tmp_path: Path) -> None:
    content = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    (tmp_path / "x").write_bytes(content[:-100])
    with pytest.raises(DataError, match=r"x: truncated: shape \(4, 28, 28\) needs 3152 bytes"):
        load_idx(tmp_path, "x", expected_ndim=3)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.ones((4, 28, 28), dtype=np.uint8)))
    (tmp_path / "x.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match=r"x\.gz: corrupt or truncated gzip data"):
        load_idx(tmp_path, "x", expected_ndim=3)


def test_bad_checksum(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros(5, dtype=np.uint8), gzipped=True)
    with pytest.raises(DataError, match=r"x\.gz: checksum mismatch: .* expected 0{64}"):
        load_idx(tmp_path, "x", expected_ndim=1, sha256="0" * 64)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: missing"):
        load_split(tmp_path, train=True)


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x00\x00")
    with pytest.raises(DataError) as caught:
        load_idx(tmp_path, "x", expected_ndim=3)
    assert "\n" not in str(caught.value)
    assert str(tmp_path / "x") in str(caught.value)


def test_load_split_verifies_real_checksums(
    synthetic_mnist: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, checksums = synthetic_mnist
    with pytest.raises(DataError, match="checksum mismatch"):
        load_split(folder, train=True)  # random content cannot match the real MNIST sums
    monkeypatch.setattr(data, "SHA256", checksums)
    split = load_split(folder, train=False)
    assert split.images.shape == (20, 28, 28) and split.labels.dtype == np.int64


def test_download_fails_cleanly_when_offline(tmp_path: Path) -> None:
    unreachable = ("http://127.0.0.1:9/", "http://127.0.0.1:9/other/")
    with pytest.raises(DataError) as caught:
        data.download(tmp_path / "mnist", mirrors=unreachable)
    message = str(caught.value)
    assert "download failed from every mirror" in message and "\n" not in message
    assert message.count("127.0.0.1:9") == 2
    assert not list((tmp_path / "mnist").iterdir())  # nothing half-written is left behind
