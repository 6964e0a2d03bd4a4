"""Accuracy of any ONNX digit model on the MNIST test set, with ONNX Runtime alone.

No torch import here: this is what the service will see, so it is measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from training.config import IMAGE_SIDE, LABELS, NUM_CLASSES
from training.data import MnistSplit, load_split

BATCH = 1000


class ModelFileError(Exception):
    """The ONNX file is missing, not loadable or not a digit model; str() is one line naming
    it."""


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    confusion: np.ndarray  # (10, 10) int64: rows true label, columns prediction
    images: int


def open_session(model_path: Path) -> ort.InferenceSession:
    if model_path.is_dir():
        raise ModelFileError(f"{model_path}: is a folder; name the .onnx file in it")
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: model file not found")
    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own untyped errors for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unknown"
        raise ModelFileError(f"{model_path}: not a loadable ONNX model ({first_line})") from None
    _check_contract(model_path, session)
    return session


def _check_contract(model_path: Path, session: ort.InferenceSession) -> None:
    """One image in [N, 1, 28, 28], ten probabilities out: a file of other shapes failed in
    ONNX Runtime mid-run, or was scored on whichever outputs it had."""
    inputs, model_output = session.get_inputs(), session.get_outputs()[0]
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [1, IMAGE_SIDE, IMAGE_SIDE]:
        raise ModelFileError(
            f"{model_path}: takes {[model_input.shape for model_input in inputs]}, not one "
            f"[N, 1, {IMAGE_SIDE}, {IMAGE_SIDE}] image tensor: not a digit model of this project"
        )
    if list(model_output.shape[1:]) != [NUM_CLASSES]:
        raise ModelFileError(
            f"{model_path}: answers {model_output.shape}, not [N, {NUM_CLASSES}] probabilities: "
            "not a digit model of this project"
        )


def probabilities(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """(N, 10) probabilities for (N, 28, 28) images, uint8 0..255 or float 0..1, in batches."""
    input_name = session.get_inputs()[0].name
    scale = np.float32(255.0) if images.dtype == np.uint8 else np.float32(1.0)
    parts = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH].astype(np.float32) / scale
        probs = session.run(None, {input_name: chunk.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)})[0]
        parts.append(np.asarray(probs, dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, NUM_CLASSES), dtype=np.float32)


def predict(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """Predicted labels for uint8 (N, 28, 28) images, in batches."""
    return probabilities(session, images).argmax(axis=1)


def evaluation_of(predicted: np.ndarray, labels: np.ndarray) -> Evaluation:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return Evaluation(
        accuracy=float((predicted == labels).mean()),
        confusion=confusion,
        images=len(labels),
    )


def evaluate_split(model_path: Path, split: MnistSplit) -> Evaluation:
    return evaluation_of(predict(open_session(model_path), split.images), split.labels)


def evaluate_file(model_path: Path, data_dir: Path) -> Evaluation:
    """The MNIST test-set accuracy of the ONNX file at model_path."""
    session_check = open_session(model_path)  # fail on the model before reading 10 000 images
    del session_check
    return evaluate_split(model_path, load_split(data_dir, train=False))


@dataclass(frozen=True)
class CorrectionsScore:
    """A model on a corrections folder: how it reads what users corrected."""

    folder: Path
    digits: int
    correct: int  # digits this model reads as the users said
    served_correct: int  # digits the service had already answered right (confirmations)
    outliers: int
    outlier_top_median: float | None  # median top-class probability on "not a digit" images
    outliers_unsure: int  # of them, answered with a top-class probability below UNSURE

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.digits if self.digits else None


UNSURE = 0.5


def evaluate_corrections(model_path: Path, folder: Path) -> CorrectionsScore:
    """The ONNX file at ``model_path`` on the corrections in ``folder``."""
    from training.extra_data import OUTLIER, load_folder

    session = open_session(model_path)
    images, labels, predicted, _ = load_folder(folder)
    scored = probabilities(session, images)
    digits = labels != OUTLIER
    read = scored.argmax(axis=1)
    top = scored.max(axis=1)[~digits]
    return CorrectionsScore(
        folder=folder,
        digits=int(digits.sum()),
        correct=int((read[digits] == labels[digits]).sum()),
        served_correct=sum(
            1
            for label, said in zip(labels, predicted, strict=True)
            if label != OUTLIER and said == label
        ),
        outliers=int((~digits).sum()),
        outlier_top_median=float(np.median(top)) if len(top) else None,
        outliers_unsure=int((top < UNSURE).sum()),
    )


def per_class_table(confusion: np.ndarray) -> list[dict[str, Any]]:
    """One row per digit: images, correct, accuracy; for the model card and the console."""
    rows = []
    for digit, label in enumerate(LABELS):
        total = int(confusion[digit].sum())
        correct = int(confusion[digit, digit])
        rows.append(
            {
                "digit": label,
                "images": total,
                "correct": correct,
                "accuracy": round(correct / max(total, 1), 6),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["digit  images  correct  accuracy"]
    for row in rows:
        lines.append(
            f"{row['digit']:>5}  {row['images']:>6}  {row['correct']:>7}  {row['accuracy']:>8.2%}"
        )
    return "\n".join(lines)
