"""Corrections folders as the service writes them are read as training data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from service.feedback.store import CorrectionStore
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
