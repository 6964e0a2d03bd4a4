"""The ONNX Runtime session behind the service: load, check the contract, warm up, predict.

Imported only by the worker processes (and tools that time the model alone): the server
process knows the model through the ``ModelInfo`` a worker reports (service/contract.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.contract import (
    INPUT_NAME,
    INPUT_SHAPE,
    NUM_CLASSES,
    OUTPUT_NAME,
    THRESHOLD_FROM_MODEL,
    ModelInfo,
    ModelLoadError,
    ModelSpec,
    RejectRule,
    float_or_none,
    labels_of,
    read_card,
    reject_rule,
)

logger = logging.getLogger("service.model")

_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def choose_providers(requested: str, available: list[str] | None = None) -> list[str]:
    """Execution providers for a configured ``cpu``/``cuda``/``auto``, CPU always last."""
    available = ort.get_available_providers() if available is None else available
    if requested == "cpu":
        return [_CPU]
    if _CUDA in available:
        return [_CUDA, _CPU]
    if requested == "cuda":
        logger.warning(
            "provider cuda requested but CUDAExecutionProvider is not available "
            "(available: %s); falling back to CPU",
            ", ".join(available),
        )
    else:
        logger.info("provider auto: CUDA not available, using CPU")
    return [_CPU]


def _dims(shape: list[Any]) -> tuple[str | int, ...]:
    return tuple(dim if isinstance(dim, int) else str(dim or "N") for dim in shape)


def _check_signature(session: ort.InferenceSession, path: Path) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelLoadError(
            f"{path}: model inputs are {[i.name for i in inputs]}, expected ['{INPUT_NAME}']"
        )
    if OUTPUT_NAME not in [o.name for o in outputs]:
        raise ModelLoadError(
            f"{path}: model outputs are {[o.name for o in outputs]}, expected '{OUTPUT_NAME}'"
        )
    image = inputs[0]
    if image.type != "tensor(float)":
        raise ModelLoadError(f"{path}: input '{INPUT_NAME}' is {image.type}, expected float32")
    if len(image.shape) != 4 or tuple(image.shape[1:]) != INPUT_SHAPE:
        raise ModelLoadError(
            f"{path}: input '{INPUT_NAME}' has shape {list(image.shape)}, expected [N, 1, 28, 28]"
        )
    if isinstance(image.shape[0], int):  # the workers batch images: N must be free
        raise ModelLoadError(
            f"{path}: input '{INPUT_NAME}' has a fixed batch size of {image.shape[0]}, expected "
            "[N, 1, 28, 28] with N free (export with a dynamic first axis)"
        )
    output = next(o for o in outputs if o.name == OUTPUT_NAME)
    if len(output.shape) != 2 or output.shape[1] != NUM_CLASSES:
        raise ModelLoadError(
            f"{path}: output '{OUTPUT_NAME}' has shape {list(output.shape)}, expected [N, 10]"
        )


class DigitClassifier:
    """One ONNX Runtime session serving LeNet-5's contract (docs/design.md section 1).
    ``predict`` is thread-safe because ``InferenceSession.run`` is."""

    def __init__(
        self,
        model_path: Path,
        *,
        provider: str = "cpu",
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        card_path: Path | None = None,
        not_a_digit_threshold: str = THRESHOLD_FROM_MODEL,
    ) -> None:
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        data = model_path.read_bytes()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        # Spinning workers burn a core each while idle; a small CNN gains nothing from them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=choose_providers(provider)
            )
        except Exception as exc:  # ORT raises its own untyped errors for every bad file
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
            raise ModelLoadError(
                f"{model_path} is not a loadable ONNX model: {first_line}"
            ) from exc
        _check_signature(self._session, model_path)
        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        # When an encoded image is refused as not a digit (service/workers/verdict.py).
        self.reject: RejectRule | None = reject_rule(metadata, not_a_digit_threshold)
        self.info = self._describe(model_path, data, card_path)

    @classmethod
    def open(cls, spec: ModelSpec) -> DigitClassifier:
        return cls(
            Path(spec.path),
            provider=spec.provider,
            intra_op_threads=spec.intra_op_threads,
            inter_op_threads=spec.inter_op_threads,
            card_path=Path(spec.card_path) if spec.card_path else None,
            not_a_digit_threshold=spec.not_a_digit_threshold,
        )

    def _describe(self, path: Path, data: bytes, card_path: Path | None) -> ModelInfo:
        meta = self._session.get_modelmeta()
        metadata = dict(meta.custom_metadata_map)
        sha256 = hashlib.sha256(data).hexdigest()
        card = read_card(card_path) if card_path else None
        if card and card.get("sha256") and card["sha256"] != sha256:
            # Another file's card (a model copied over the path, its card left behind): its
            # figures would be shown as this model's.
            logger.warning(
                "model card %s says sha256 %s but %s has %s; ignoring the card",
                card_path,
                card["sha256"],
                path,
                sha256,
            )
            card = None
        source = {**(card or {}), **metadata}
        image = self._session.get_inputs()[0]
        output = next(o for o in self._session.get_outputs() if o.name == OUTPUT_NAME)
        return ModelInfo(
            name=metadata.get("name") or meta.graph_name or path.stem,
            version=metadata.get("version") or str(meta.version),
            sha256=sha256,
            provider=self._session.get_providers()[0],
            path=str(path),
            input_name=image.name,
            input_shape=_dims(image.shape),
            output_name=output.name,
            output_shape=_dims(output.shape),
            labels=labels_of(metadata),
            val_accuracy=float_or_none(source.get("val_accuracy")),
            test_accuracy=float_or_none(source.get("test_accuracy")),
            created_at=metadata.get("created_at") or (card or {}).get("created_at"),
            metadata=metadata,
            card=card,
            not_a_digit=self.reject.to_dict() if self.reject else None,
        )

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 10) for float32 images (N, 1, 28, 28) in MNIST convention."""
        (probabilities,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: images})
        return np.asarray(probabilities, dtype=np.float32)

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run each batch size once so the first real request pays no allocation cost."""
        for size in batch_sizes:
            try:
                probabilities = self.predict(np.zeros((size, *INPUT_SHAPE), dtype=np.float32))
            except Exception as exc:  # ONNX Runtime's own errors: the whole reason, one line
                reason = " ".join(str(exc).split())
                raise ModelLoadError(
                    f"{self.info.path}: a warm-up batch of {size} failed: {reason}"
                ) from None
            if probabilities.shape != (size, NUM_CLASSES) or not np.isfinite(probabilities).all():
                raise ModelLoadError(
                    f"{self.info.path}: warm-up batch of {size} gave shape "
                    f"{probabilities.shape} or non-finite values, expected ({size}, 10)"
                )


def check(argv: list[str]) -> int:
    """``python -m service.model SPEC_JSON``: open the model once and write its ModelInfo JSON
    on stdout, or its one-line ModelLoadError on stderr (exit 1). The server checks a shadow
    model (DIGITS_SHADOW_MODEL_PATH) this way before it binds its port, without loading ONNX
    Runtime itself; the served model goes through the load gate (repository/gate.py)."""
    spec = ModelSpec(**json.loads(argv[0]))
    try:
        classifier = DigitClassifier.open(spec)
        classifier.warm_up()
    except ModelLoadError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(classifier.info.to_json().decode())
    return 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[1:]))
