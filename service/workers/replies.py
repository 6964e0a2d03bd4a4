"""The replies to one batch (worker process): one per frame, with what its flags ask for.

A frame's reply carries each image's probabilities or error (an image the model ran on may
still be refused as not a digit, service/workers/verdict.py), and besides them only what the
frame asked for (service/workers/extras.py): the PNG of what the model saw, its 8-bit
pixels, the saliency map
and overlay of each answered image (computed here, after the batch's model call, with one
more model call per explained image), the worker's timings for the server's trace.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from service.contract import NUM_CLASSES, SIDE
from service.errors import ServiceError
from service.explanations.occlusion import saliency
from service.explanations.overlay import overlay_png
from service.imaging import Prepared, encode_png
from service.model import DigitClassifier
from service.workers import protocol as wire
from service.workers.extras import Explanations, to_uint8
from service.workers.inbox import Frame
from service.workers.verdict import refusal, scores

logger = logging.getLogger("service.workers")


@dataclass(slots=True)
class ModelCall:
    """A batch's one model call: its result or why it failed, and when (time.monotonic)."""

    probabilities: np.ndarray
    failed: ServiceError | None
    prepared_at: float  # the batch's preprocessing began
    started: float
    seconds: float


def replies(
    batch: list[Frame],
    images: dict[int, list[Prepared]],
    call: ModelCall,
    model: DigitClassifier,
) -> list[bytes]:
    """One reply per frame; the first carries the model call's size and time (a metric)."""
    parts: list[bytes] = []
    probabilities, failed = call.probabilities, call.failed
    judged = _rule_scores(batch, call, model)
    row = 0  # the inputs' rows follow one another in ``probabilities``
    for number, frame in enumerate(batch):
        if frame.kind == wire.TENSOR:
            if failed is None:
                rows = probabilities[row : row + frame.count]
                waited = max(0.0, call.started - frame.sent_at)
                kind, payload = wire.PROBABILITIES, wire.encode_tensor_probabilities(rows, waited)
                row += frame.count
            else:
                kind, payload = wire.ERROR, wire.encode_error(failed)
        else:
            kind = wire.IMAGES
            prepared = images[frame.request_id]
            payload = _image_results(frame, prepared, call, row, model, judged)
            if failed is None:
                row += sum(image.error is None for image in prepared)
        first = number == 0
        size, model_s = (len(probabilities), call.seconds) if first else (0, 0.0)
        head = wire.ReplyHead(frame.request_id, kind, size, model_s, len(payload))
        parts += (head.pack(), payload)
    return parts


def _rule_scores(batch: list[Frame], call: ModelCall, model: DigitClassifier) -> list[float]:
    """Each row's score under the model's not-a-digit rule, in one pass for the whole call;
    empty when no image is to be judged (no rule, a failed call, tensor frames only)."""
    if model.reject is None or call.failed is not None:
        return []
    if not any(frame.kind == wire.ENCODED for frame in batch):
        return []
    return scores(call.probabilities, model.reject.rule).tolist()


def _image_results(
    frame: Frame,
    prepared: list[Prepared],
    call: ModelCall,
    row: int,
    model: DigitClassifier,
    judged: list[float],
) -> bytes:
    """The IMAGES payload for one frame; its good images' rows (and ``judged`` scores)
    start at ``row``."""
    failed = call.failed
    good = [index for index, image in enumerate(prepared) if image.error is None]
    if failed is None and len(good) == len(prepared):  # the usual case: the rows as they are
        rows = call.probabilities[row : row + len(good)]
    else:
        rows = np.zeros((len(prepared), NUM_CLASSES), np.float32)
        if failed is None:
            rows[good] = call.probabilities[row : row + len(good)]
    errors = [image.error or failed for image in prepared]  # before the model (or its call)
    verdicts = list(errors)
    if failed is None:
        for position, index in enumerate(good):  # a digit at all? (service/workers/verdict.py)
            verdicts[index] = refusal(
                model.reject,
                model.info.labels,
                prepared[index].pixels,  # type: ignore[arg-type]
                rows[index],
                judged[row + position] if judged else 0.0,
            )
    waits = [
        0.0 if error is not None else max(0.0, call.started - frame.sent_at - image.seconds)
        for image, error in zip(prepared, errors, strict=True)
    ]
    pngs = None
    if frame.flags & wire.WITH_IMAGE:
        pngs = [
            b"" if error is not None else encode_png(image.pixels)  # type: ignore[arg-type]
            for image, error in zip(prepared, errors, strict=True)
        ]
    seconds = [image.seconds for image in prepared]
    explanations, explain_window = None, (0.0, 0.0)
    if frame.flags & wire.EXPLAIN:
        explain_start = time.monotonic()
        explanations = _explain(frame, prepared, rows, [] if failed else good, model)
        explain_window = (explain_start, time.monotonic())
    pixels = None
    if frame.flags & wire.WITH_PIXELS:
        answered = set() if failed else set(good)
        pixels = [
            to_uint8(image.pixels) if index in answered else None  # type: ignore[arg-type]
            for index, image in enumerate(prepared)
        ]
    timing = None
    if frame.flags & wire.TRACED:
        end = call.started + call.seconds
        timing = (call.prepared_at, call.started, end, *explain_window, len(call.probabilities))
    # A refused image keeps what the model saw and why (its PNG, map and pixels) beside its error.
    return wire.encode_image_results(
        rows, seconds, waits, verdicts, pngs, explanations, timing, pixels
    )


def _explain(
    frame: Frame,
    prepared: list[Prepared],
    rows: np.ndarray,
    answered: list[int],
    model: DigitClassifier,
) -> Explanations:
    """The saliency map and overlay of each image the model answered, for its top class.

    Computed for every image the model ran on, whatever is decided about the answer after
    it (a refusal such as not_a_digit keeps its map: it shows why). A failure here costs the
    explanations, never the answers.
    """
    maps = np.zeros((len(prepared), SIDE, SIDE), np.float32)
    overlays = [b""] * len(prepared)
    for index in answered:
        pixels = prepared[index].pixels
        target = int(rows[index].argmax())
        try:
            heat = saliency(model.predict, pixels, target, float(rows[index, target]))  # type: ignore[arg-type]
            overlays[index] = overlay_png(pixels, heat, float(rows[index, target]))  # type: ignore[arg-type]
            maps[index] = heat
        except Exception:
            logger.exception(
                "explaining image %d of a frame failed",
                index,
                extra={"trace_id": trace_id(frame)},
            )
    return Explanations(maps, overlays)


def trace_id(frame: Frame) -> str | None:
    """The W3C trace id of a TRACED frame, for the worker's log lines about it."""
    context = frame.trace_context
    return context[:16].hex() if context is not None else None
