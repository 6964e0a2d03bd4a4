"""Corrections folders (the service's DIGITS_FEEDBACK_DIR) as training and evaluation data.

The folder's format is the service's contract with training (docs/design.md section 7):
``index.jsonl``, one JSON object per correction with ``image`` (a path inside the folder to a
28x28 8-bit PNG of what the model saw, already in MNIST convention) and ``label`` (0-9, or
null: "not a digit"). Digits become labelled examples; "not a digit" images become outliers,
trained towards a uniform answer (outlier exposure, Hendrycks et al. 2019) with
``--outlier-weight``. A line that is not such an object, or whose image is missing or not
28x28, is a DataError naming the folder and the line: a training set is not guessed at.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from training.config import IMAGE_SIDE, NUM_CLASSES
from training.data import DataError

INDEX = "index.jsonl"
IMAGES = "images"  # where the service keeps the PNGs the index names (docs/design.md section 7)
OUTLIER = -1  # the label of a "not a digit" example


@dataclass(frozen=True)
class ExtraData:
    """Images (N, 28, 28) uint8, labels (N,) int64 with OUTLIER for "not a digit"."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[dict[str, object]] = field(default_factory=list)  # folder, sha256, counts

    @property
    def digits(self) -> int:
        return int((self.labels != OUTLIER).sum())

    @property
    def outliers(self) -> int:
        return int((self.labels == OUTLIER).sum())


def _read_image(folder: Path, relative: object, where: str) -> np.ndarray:
    if not isinstance(relative, str) or not relative:
        raise DataError(f"{where}: 'image' must be a path inside the folder")
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents:
        raise DataError(f"{where}: image {relative!r} lies outside {folder}")
    try:
        with Image.open(path) as image:
            if image.size != (IMAGE_SIDE, IMAGE_SIDE):  # from the header, before decoding
                width, height = image.size
                raise DataError(f"{where}: image {relative!r} is {height}x{width}, expected 28x28")
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{where}: cannot read image {relative!r} ({exc})") from None


def _label(raw: object, where: str) -> int:
    if raw is None:
        return OUTLIER
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < NUM_CLASSES:
        raise DataError(f"{where}: 'label' must be 0-9 or null, got {raw!r}")
    return raw


def load_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[object], dict[str, object]]:
    """(images, labels, what was predicted, a summary) of one corrections folder."""
    index = folder / INDEX
    if index.is_file():
        content = index.read_bytes()
    else:  # the service makes the folder and images/ at start, the index with a correction
        pictures = folder / IMAGES
        if not pictures.is_dir():
            raise DataError(f"{index}: missing (is {folder} a corrections folder?)")
        if any(pictures.iterdir()):
            raise DataError(
                f"{index}: missing, while {pictures} holds images: their labels are lost"
            )
        content = b""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{index}: not UTF-8 text ({exc})") from None
    images, labels, predicted = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{index}:{number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{where}: not JSON ({exc})") from None
        if not isinstance(record, dict) or "label" not in record:
            raise DataError(f"{where}: expected an object with 'image' and 'label'")
        labels.append(_label(record["label"], where))
        images.append(_read_image(folder, record.get("image"), where))
        predicted.append(record.get("predicted"))
    stack = np.stack(images) if images else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    label_array = np.array(labels, dtype=np.int64)
    summary: dict[str, object] = {
        "folder": str(folder),
        "index_sha256": hashlib.sha256(content).hexdigest(),
        "digits": int((label_array != OUTLIER).sum()),
        "outliers": int((label_array == OUTLIER).sum()),
    }
    return stack, label_array, predicted, summary


def load_extra(folders: list[Path]) -> ExtraData:
    """Every folder's corrections, in order."""
    parts = [load_folder(folder) for folder in folders]
    images = [part[0] for part in parts]
    labels = [part[1] for part in parts]
    return ExtraData(
        np.concatenate(images) if images else np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8),
        np.concatenate(labels) if labels else np.zeros(0, np.int64),
        [part[3] for part in parts],
    )
