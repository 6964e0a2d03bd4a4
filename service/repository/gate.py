"""The checks a model file passes before it may serve: at start-up (``python -m service``
runs them before it binds its port) and at every load, in a child process.

``python -m service.repository.gate REQUEST_JSON`` opens the file with ONNX Runtime (names,
dtypes and shapes of the contract, service/model.py), then runs it on the check digits
(labelled real MNIST digits shipped in models/): the outputs must be probabilities (finite,
in 0..1, each row summing to 1), a row must not depend on the rows beside it in a batch,
and the accuracy must reach the floor. It writes one JSON object on stdout (the ModelInfo,
the accuracy) or one line on stderr saying why the file is refused (exit 1).

A child process because the server process never loads ONNX Runtime, and a file that
crashes ONNX Runtime must not take a worker (or the server) with it. ``child`` and
``outcome`` are how both callers (start-up, service/__main__.py, and a load,
service/repository/loader.py) run it and read what it said.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from service.contract import (
    INPUT_SHAPE,
    NUM_CLASSES,
    THRESHOLD_OFF,
    ModelLoadError,
    ModelSpec,
    check_metadata,
)

SUM_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; a missing softmax is far off
ALONE_TOLERANCE = 1e-4  # a row computed alone vs inside the batch
ALONE_ROWS = 4  # rows run one by one to check that the batch axis is really independent
TIMEOUT_S = 60.0  # importing ONNX Runtime and checking a model on a busy machine
TIMED_OUT = f"checking the model took longer than {TIMEOUT_S:g} s"


@dataclass(frozen=True)
class GateRequest:
    model: ModelSpec
    check_digits: str
    min_accuracy: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> GateRequest:
        fields = json.loads(raw)
        return cls(ModelSpec(**fields["model"]), fields["check_digits"], fields["min_accuracy"])


def load_check_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The check digits as model inputs (N, 1, 28, 28) float32 in 0..1, and their labels."""
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"the check digits {path} are unreadable: {exc}") from exc
    if images.ndim != 3 or images.shape[1:] != INPUT_SHAPE[1:] or len(images) != len(labels):
        raise ModelLoadError(f"the check digits {path} are not [N, 28, 28] images with N labels")
    inputs = (images.astype(np.float32) / 255.0).reshape(-1, *INPUT_SHAPE)
    return inputs, labels.astype(np.int64)


def check_probabilities(probabilities: np.ndarray, count: int) -> None:
    """Raises ModelLoadError unless ``probabilities`` is (count, 10) of softmax rows."""
    if probabilities.shape != (count, NUM_CLASSES):
        raise ModelLoadError(
            f"output 'probabilities' has shape {list(probabilities.shape)} for {count} "
            f"images, expected [{count}, {NUM_CLASSES}]"
        )
    if not np.isfinite(probabilities).all():
        raise ModelLoadError("output 'probabilities' holds NaN or infinite values")
    if probabilities.min() < 0.0 or probabilities.max() > 1.0:
        raise ModelLoadError(
            f"output 'probabilities' ranges over {probabilities.min():.4g}..."
            f"{probabilities.max():.4g}, expected 0..1 (softmax missing from the graph?)"
        )
    sums = probabilities.sum(axis=1)
    if np.abs(sums - 1.0).max() > SUM_TOLERANCE:
        raise ModelLoadError(
            f"output rows sum to {sums.min():.4g}...{sums.max():.4g}, expected 1 "
            "(softmax missing from the graph?)"
        )


def inspect(request: GateRequest) -> dict[str, Any]:
    """The checks above; what the server logs and answers about the file."""
    from service.model import DigitClassifier  # ONNX Runtime: only in this child process

    # The not-a-digit rule is the workers' business (they read it from the file again): off
    # here, so a file without one is checked without a warning on the gate's one-line stderr.
    model = DigitClassifier.open(replace(request.model, not_a_digit_threshold=THRESHOLD_OFF))
    inputs, labels = load_check_digits(Path(request.check_digits))
    probabilities = model.predict(inputs)
    check_probabilities(probabilities, len(inputs))
    alone = np.concatenate([model.predict(inputs[i : i + 1]) for i in range(ALONE_ROWS)])
    if not np.allclose(alone, probabilities[:ALONE_ROWS], atol=ALONE_TOLERANCE):
        raise ModelLoadError(
            "an image's answer changes with the other images of its batch "
            "(batch-dependent layers, e.g. batch norm exported in training mode)"
        )
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    if accuracy < request.min_accuracy:
        raise ModelLoadError(
            f"accuracy on the {len(labels)} check digits is {accuracy:.1%}, below the floor "
            f"of {request.min_accuracy:.1%} (DIGITS_MODEL_MIN_ACCURACY)"
        )
    check_metadata(model.info.metadata)
    return {"info": json.loads(model.info.to_json()), "accuracy": accuracy, "digits": len(labels)}


def child(module: str, request: str) -> list[str]:
    """The command line of a check in a child process: ``python -m module REQUEST`` (this
    module with a GateRequest, or service.model with a ModelSpec to only open the file)."""
    return [sys.executable, "-m", module, request]


def outcome(returncode: int | None, stdout: bytes, stderr: bytes) -> dict[str, Any]:
    """What a check's child process said: its JSON report, or ModelLoadError with its one-line
    reason. The report is its stdout's last line: a library the model runs may print first."""
    if returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        raise ModelLoadError(lines[-1] if lines else f"the model check exited with {returncode}")
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = None
    if not isinstance(report, dict):
        raise ModelLoadError(f"the model check wrote no report: {stdout[-200:]!r}")
    return report


def main(argv: list[str]) -> int:
    try:
        report = inspect(GateRequest.from_json(argv[0]))
    except ModelLoadError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
