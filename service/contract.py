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
SIDE = 28
INPUT_SHAPE = (1, SIDE, SIDE)  # after the dynamic batch axis
NUM_CLASSES = 10
DEFAULT_LABELS = tuple(str(digit) for digit in range(NUM_CLASSES))
# A model version that does not start with a number ("beta", "") is V2 version 1.
_DEFAULT_V2_VERSION = "1"
_MAJOR = re.compile(r"^v?(\d+)(?:[.+-]|$)")


# How an image is judged "not a digit" (docs/design.md section 1): the score of its probabilities
# under one of these rules, refused below the threshold; the model's metadata names both.
REJECT_RULES = ("max_probability", "margin", "certainty")
REJECT_METADATA_KEY = "not_a_digit"
THRESHOLD_FROM_MODEL, THRESHOLD_OFF = "model", "off"


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
    # DIGITS_NOT_A_DIGIT_THRESHOLD: "model" (the model's own), "off", or a number
    not_a_digit_threshold: str = THRESHOLD_FROM_MODEL


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
    not_a_digit: dict[str, Any] | None = None  # the RejectRule in force, as a dict; None: off

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


@dataclass(frozen=True)
class RejectRule:
    """When the service answers ``not_a_digit``: ``rule``'s score of the probabilities is
    below ``threshold``. ``source`` says whether the threshold is the model's or a setting's."""

    rule: str
    threshold: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "refused_when": f"{self.rule}(probabilities) < {self.threshold:g}",
        }


def reject_rule(metadata: dict[str, str], setting: str) -> RejectRule | None:
    """The rule in force for a model's metadata and the DIGITS_NOT_A_DIGIT_THRESHOLD
    setting; None when the setting is "off" or the model publishes no usable rule."""
    if setting == THRESHOLD_OFF:
        return None
    try:
        published = published_rule(metadata)
    except MetadataError:
        published = None  # the gate refuses such a file; a file opened without it: no rule
    if setting == THRESHOLD_FROM_MODEL:
        if published is None:
            logger.warning("the model publishes no not_a_digit rule: every image is answered")
            return None
        return RejectRule(*published, "model")
    # A number from the settings: the model's rule if it names one, else the top probability.
    rule = published[0] if published is not None else REJECT_RULES[0]
    return RejectRule(rule, float(setting), "setting")


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
        return published_labels(metadata) or DEFAULT_LABELS
    except MetadataError:
        return DEFAULT_LABELS


class MetadataError(ModelLoadError):
    """A metadata entry the service needs is there but cannot be read; the message says
    what it should be. A load refuses such a file (the gate); a worker that opens one
    anyway falls back to the defaults."""


def published_rule(metadata: dict[str, str]) -> tuple[str, float] | None:
    """The not-a-digit rule and threshold the model publishes; None when it publishes none."""
    if REJECT_METADATA_KEY not in metadata:
        return None
    value = _json_entry(metadata, REJECT_METADATA_KEY, _RULE_FORM)
    rule = value.get("rule") if isinstance(value, dict) else None
    threshold = float_or_none(value.get("threshold")) if isinstance(value, dict) else None
    if rule not in REJECT_RULES or threshold is None or not 0.0 <= threshold <= 1.0:
        raise _unreadable(metadata, REJECT_METADATA_KEY, _RULE_FORM)
    return rule, threshold


def published_labels(metadata: dict[str, str]) -> tuple[str, ...] | None:
    """The label set the model publishes; None when it publishes none."""
    if "labels" not in metadata:
        return None
    value = _json_entry(metadata, "labels", _LABELS_FORM)
    if not isinstance(value, list) or len(value) != NUM_CLASSES:
        raise _unreadable(metadata, "labels", _LABELS_FORM)
    return tuple(str(label) for label in value)


def check_metadata(metadata: dict[str, str]) -> None:
    """Raises MetadataError for a file whose metadata the service would misread: without a
    name it took its ONNX graph's (a plain export's "main_graph", version
    9223372036854775807) and its V2 routes moved while readiness stayed 200; a name no
    URL path segment can carry ("digits/v2", "..") names routes nobody can reach; an
    unreadable not-a-digit rule, label set or normalisation was served as none at all, the
    first turning every refusal off. Entries left out are the defaults. (The V2 routes
    name a version by its major number: any version text is reachable.)"""
    for key in ("name", "version"):
        value = metadata.get(key, "")
        if not value.strip():
            raise MetadataError(
                f"its metadata has no {key!r}: answers, the V2 routes and the metrics are "
                "named by it (`python -m training export` writes it)"
            )
    if not _routable(metadata["name"]):
        raise _unreadable(metadata, "name", _NAME_FORM)
    published_rule(metadata)
    published_labels(metadata)
    if "normalization" in metadata:
        if not isinstance(_json_entry(metadata, "normalization", "a JSON object"), dict):
            raise _unreadable(metadata, "normalization", "a JSON object")


# What no URL path segment carries: a slash (either way), a control character.
_UNROUTABLE = re.compile(r"[/\\\x00-\x1f\x7f]")
_NAME_FORM = "a URL path segment (no slash or control character, not '.' or '..')"
_RULE_FORM = 'a JSON object {"rule": ..., "threshold": 0..1}'
_LABELS_FORM = f"a JSON list of {NUM_CLASSES} labels"


def _routable(name: str) -> bool:
    """Whether a URL's path segment can name it: "." and ".." are resolved away by clients
    and proxies, and a space round a name makes another name than the one clients ask for."""
    return not _UNROUTABLE.search(name) and name not in (".", "..") and name == name.strip()


def _json_entry(metadata: dict[str, str], key: str, expected: str) -> Any:
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise _unreadable(metadata, key, expected) from None


def _unreadable(metadata: dict[str, str], key: str, expected: str) -> MetadataError:
    return MetadataError(f"its {key!r} metadata is not {expected}: {metadata[key][:80]!r}")


def float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
