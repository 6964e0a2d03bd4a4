"""Corrections folders as the service writes them are read as training data."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from service.feedback.store import CorrectionStore
from training.data import DataError
from training.extra_data import OUTLIER, load_folder

PIXELS = bytes(range(256)) * 3 + bytes(16)  # one 28x28 image, 784 bytes


def test_a_service_written_record_with_the_model_hash_is_read(tmp_path: Path) -> None:
    """The record's "model" gained the file's sha256: a reader that only wants image and
    label must not mind it (nor any field it does not read)."""
    folder = tmp_path / "corrections"
    store = CorrectionStore(folder, max_records=10)
    model = {"name": "lenet5", "version": "1.0.0", "sha256": "ab" * 32}
    store.append({"label": 3, "predicted": 5, "model": model, "request_id": "r"}, PIXELS)
    store.append({"label": None, "predicted": "not_a_digit", "model": model}, PIXELS)
    images, labels, predicted, summary = load_folder(folder)
    assert images.shape == (2, 28, 28) and images[0].tobytes() == PIXELS
    assert labels.tolist() == [3, OUTLIER] and predicted == [5, "not_a_digit"]
    assert (summary["digits"], summary["outliers"]) == (1, 1)
    first = json.loads((folder / "index.jsonl").read_text().splitlines()[0])
    assert first["model"]["sha256"] == "ab" * 32
    assert np.array_equal(images[0], images[1])


def test_a_folder_the_service_has_just_made_holds_no_corrections(tmp_path: Path) -> None:
    """The service makes the folder and images/ when it starts, the index with the first
    correction: such a folder was refused ("index.jsonl: missing"), where an empty index was
    read as no corrections."""
    folder = tmp_path / "corrections"
    CorrectionStore(folder, max_records=10)
    assert not (folder / "index.jsonl").exists()  # as the service leaves it until then
    images, labels, _, summary = load_folder(folder)
    assert len(images) == len(labels) == 0
    assert (summary["digits"], summary["outliers"]) == (0, 0)
    with pytest.raises(DataError, match="a corrections folder"):
        load_folder(tmp_path)  # neither an index nor images/: no corrections folder
    (folder / "images" / "a.png").write_bytes(b"")  # images whose index was deleted
    with pytest.raises(DataError, match="holds images: their labels are lost"):
        load_folder(folder)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds no pixels: its size is in the
    header, read before anything is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("index", "image", "says"),
    [
        (b"\xff\xfe not text\n", None, "not UTF-8 text"),
        (b'{"image": "big.png", "label": 3}\n', _png_header_only(4000, 4000), "is 4000x4000"),
        (b'{"image": "big.png", "label": 3}\n', _png_header_only(13500, 13500), "cannot read"),
    ],
)
def test_a_folder_that_cannot_be_read_is_one_error(
    tmp_path: Path, index: bytes, image: bytes | None, says: str
) -> None:
    """Each was a traceback (UnicodeDecodeError, DecompressionBombError) where every other
    fault of a corrections folder is a DataError naming the file and the line."""
    (tmp_path / "index.jsonl").write_bytes(index)
    if image is not None:
        (tmp_path / "big.png").write_bytes(image)
    with pytest.raises(DataError, match=says):
        load_folder(tmp_path)
