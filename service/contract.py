"""The model contract both sides of the service share, with no inference runtime imported.

The server process never loads ONNX Runtime: a worker process opens the model
(service/model.py) and reports a ``ModelInfo`` over the worker wire as JSON. The contract
itself (docs/design.md section 1) is input ``image`` float32 [N, 1, 28, 28] and output
``probabilities`` float32 [N, 10]; the label set comes from the model's metadata.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("service.model")

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
INPUT_SHAPE = (1, 28, 28)  # after the dynamic batch axis
SIDE = 28
NUM_CLASSES = 10
DEFAULT_LABELS = tuple(str(digit) for digit in range(NUM_CLASSES))
# A model version that does not start with a number ("beta", "") is V2 version 1.
_DEFAULT_V2_VERSION = "1"
_MAJOR = re.compile(r"^v?(\d+)(?:[.+-]|$)")


class ModelLoadError(RuntimeError):
    """The model file cannot be served; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class ModelSpec:
    """How to open the configured model: every worker process opens its own session from
    it (they receive it as JSON)."""

    path: str
    provider: str = "cpu"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    card_path: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the service knows about the model it serves (GET /model, digits_model_info)."""

    name: str
    version: str
    sha256: str
    provider: str
    path: str
    input_name: str
    input_shape: tuple[str | int, ...]
    output_name: str
    output_shape: tuple[str | int, ...]
    labels: tuple[str, ...]
    val_accuracy: float | None
    test_accuracy: float | None
    created_at: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    card: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ModelInfo:
        fields = json.loads(raw)
        for name in ("input_shape", "output_shape", "labels"):
            fields[name] = tuple(fields[name])
        return cls(**fields)


def v2_version(model_version: str) -> str:
    """The model's version as the V2 routes name it: an integer, as Triton and its clients
    (tritonclient, perf_analyzer) expect. It is the major number of the model's semantic
    version ("1.0.0" -> "1"): a retrained model with the same contract keeps its V2 version,
    an incompatible one (a new major) gets a new one. Here because the V2 metadata and the
    statistics (service/repository/statistics.py) both name versions by it."""
    match = _MAJOR.match(model_version.strip())
    return str(int(match.group(1))) if match else _DEFAULT_V2_VERSION


def read_card(path: Path) -> dict[str, Any] | None:
    """The model card JSON beside the model, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("model card %s is unreadable (%s); ignoring it", path, exc)
        return None
    return card if isinstance(card, dict) else None


def labels_of(metadata: dict[str, str]) -> tuple[str, ...]:
    """The label set from the model's ``labels`` metadata (a JSON list of ten), else 0..9."""
    try:
        labels = json.loads(metadata.get("labels", ""))
    except ValueError:
        return DEFAULT_LABELS
    if isinstance(labels, list) and len(labels) == NUM_CLASSES:
        return tuple(str(label) for label in labels)
    return DEFAULT_LABELS


def float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
