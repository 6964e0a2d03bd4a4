"""The answers of a frame's results: one dict per image (its digit, confidence,
probabilities and the model that computed them; or its error), plus what the request asked
for (the PNG of what the model saw, the explanation), each answer remembered for a
correction when feedback is on. Plain dicts: the route serialises them with orjson."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from service.contract import NUM_CLASSES, ModelInfo
from service.errors import NoInk, NotADigit
from service.explanations.occlusion import METHOD, PARAMETERS
from service.metrics import Metrics
from service.workers.extras import Explanations
from service.workers.protocol import ImageResults


class RecentAnswers(Protocol):
    """Where answers wait for a correction (service/feedback/recent.py)."""

    def remember(
        self,
        request_id: str | None,
        index: int,
        pixels: bytes | None,
        predicted: int | str,
        confidence: float | None,
        model: dict[str, str],
    ) -> None:
        """Keep ``pixels`` (what the model saw, 28x28 8-bit; None when it saw nothing: an
        image refused before the model ran) of image ``index`` of request
        ``request_id``, answered ``predicted`` (a digit, or the code of the error it was
        refused with) by ``model`` (name, version, sha256 of its file)."""
        ...


class Answers:
    """Builds answers; each names the model that computed it (after a reload, answers of the
    old and the new model may interleave)."""

    def __init__(self, metrics: Metrics, recent: RecentAnswers | None) -> None:
        self._metrics = metrics
        self._recent = recent
        # sha256 -> the answers' "model" object and a correction record's (the same plus the
        # file's sha256, since every trained model may carry the same name and version).
        self._refs: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    def ref(self, model: ModelInfo | None) -> dict[str, str]:
        """The answers' "model" object for ``model`` (one dict per model, shared)."""
        return self._refs_of(model)[0]

    def _refs_of(self, model: ModelInfo | None) -> tuple[dict[str, str], dict[str, str]]:
        if model is None:
            return {}, {}
        refs = self._refs.get(model.sha256)
        if refs is None:
            answer = {"name": model.name, "version": model.version}
            refs = self._refs[model.sha256] = (answer, {**answer, "sha256": model.sha256})
        return refs

    def observe_tensors(self, probabilities: np.ndarray) -> None:
        """V2 answers are probabilities, but their argmax and its probability are what the
        model predicted: counted as /predict's answers are, so that the quality alerts and
        panels see a V2-only deployment's traffic (KServe's) too."""
        digits = probabilities.argmax(1)
        confidences = probabilities[np.arange(len(digits)), digits]
        counts = np.bincount(digits, minlength=NUM_CLASSES).tolist()
        self._metrics.observe_predictions(counts, confidences.tolist())

    def build(
        self,
        results: ImageResults,
        uploads: Sequence[Upload],
        named: bool,
        include_image: bool,
        request_id: str | None = None,
        first: int = 0,
    ) -> list[dict[str, Any]]:
        """One answer or error entry per image of a frame's results, in order; the numpy
        work for all of them at once. ``request_id`` and ``first`` (the first image's position
        in its request) name each answer for a correction."""
        probabilities = results.probabilities
        rows, digits, pngs = probabilities.tolist(), probabilities.argmax(1).tolist(), results.pngs
        ref, recorded = self._refs_of(results.model)
        inputs = results.pixels
        explained = results.explanations
        values = _rounded(explained.maps) if explained is not None else None
        entries: list[dict[str, Any]] = []
        for index, upload in enumerate(uploads):
            digit = digits[index]
            answer: dict[str, Any]
            confidence: float | None = None
            error = results.errors.get(index)
            if error is not None:
                if isinstance(error, NotADigit):
                    self._metrics.rejected_not_a_digit.inc()
                elif isinstance(error, NoInk):
                    self._metrics.rejected_no_ink.inc()
                answer = {"filename": upload.filename, "error": error.to_dict()}
            else:
                confidence = rows[index][digit]
                self._metrics.observe_prediction(digit, confidence)
                answer = {
                    "digit": digit,
                    "confidence": confidence,
                    "probabilities": rows[index],
                    "model": ref,
                }
            png = pngs[index] if pngs is not None else b""
            if png and include_image:
                answer["normalized_image"] = base64.b64encode(png).decode("ascii")
            if values is not None and explained.overlays[index]:  # type: ignore[union-attr]
                answer["explanation"] = _explanation(explained, values, index, digit)  # type: ignore[arg-type]
            if inputs is not None:  # sent only when answers are remembered (feedback on)
                assert self._recent is not None
                predicted = digit if error is None else error.code
                pixels = inputs[index]  # None for no_ink: remembered to say why it cannot be fixed
                self._recent.remember(
                    request_id, first + index, pixels, predicted, confidence, recorded
                )
            if named and error is None:
                answer["filename"] = upload.filename
            entries.append(answer)
        return entries


class Upload(Protocol):
    """An image as received (service.predictor.Upload)."""

    @property
    def filename(self) -> str | None: ...


def _rounded(maps: np.ndarray) -> list[Any]:
    """The maps as nested lists of floats with 5 decimals: a probability drop is read to
    1e-5, and the JSON stays a third of full float32 precision's size."""
    return np.round(maps.astype(np.float64), 5).tolist()


def _explanation(
    explained: Explanations, values: list[Any], index: int, target: int
) -> dict[str, Any]:
    return {
        "method": METHOD,
        "parameters": PARAMETERS,
        "target": target,
        "values": values[index],
        "overlay": base64.b64encode(explained.overlays[index]).decode("ascii"),
    }
