"""What a worker's reply becomes for the caller waiting on it: per-image results for encoded
images, probabilities for a tensor, or the error that failed the whole frame. The pool keeps
the bookkeeping (which request, which metrics); this module only reads the reply."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import numpy as np

from service.contract import ModelInfo
from service.errors import ServiceError
from service.workers import protocol as wire
from service.workers.connection import Pending, WorkerConnection
from service.workers.protocol import ImageResults, ReplyHead, RequestHead


class Chunk(NamedTuple):
    """Consecutive images of one request sent in one frame: how many, and their answer."""

    images: int  # ("count" would hide tuple.count)
    future: asyncio.Future[ImageResults]


class TensorResults(NamedTuple):
    """A tensor's probabilities (count, 10), the model that computed them, the frame's wait
    for its model call and that call's seconds."""

    probabilities: np.ndarray
    model: ModelInfo | None
    wait_s: float
    infer_s: float


def decode_reply(
    request: Pending, worker: WorkerConnection, head: ReplyHead, payload: bytes
) -> ImageResults | TensorResults | ServiceError:
    """The answer ``worker`` sent for ``request``; ``worker`` names the model and the model
    call's seconds (its latest call's first reply carried them)."""
    if head.kind == wire.IMAGES:
        results = _image_results(request, payload)
        results.errors.update(request.overrides)
        results.model, results.call_s = worker.model, worker.call_seconds
        return results
    if head.kind == wire.PROBABILITIES:
        probabilities, wait_s = wire.tensor_probabilities(payload, request.count)
        return TensorResults(probabilities, worker.model, wait_s, worker.call_seconds)
    return wire.decode_error(payload)


def _image_results(request: Pending, payload: bytes) -> ImageResults:
    """An IMAGES reply to ``request``; a TRACED one's timings name when it was sent."""
    flags = request.flags
    if not flags & wire.TRACED:
        return wire.decode_image_results(payload, request.count, flags)
    sent_at = RequestHead.unpack_from(request.frame).sent_at
    return wire.decode_image_results(payload, request.count, flags, sent_at)
