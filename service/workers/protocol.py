"""The wire between the server process and its worker processes: frames.

Both sides import this module and nothing of each other. A frame is a fixed ``struct``
header followed by a payload, over one socketpair per worker: no pickle, nothing a worker
could send that the server would execute. ``RequestHead`` and ``ReplyHead`` are the only
places that know a header's fields and their order.

An ENCODED frame carries the images of one request that go to one worker (one for /predict,
up to a model call's worth for /predict/batch) and gets one reply with a result or an error
per image: the event loop's cost is per frame, not per image. A TENSOR frame carries a V2
request's ready images (its reply: their probabilities and the frame's wait). A SHADOW reply
answers no request: it reports what the shadow model made of a batch already answered.
Which image a worker is on right now travels beside the frames, in progress.py.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from service.contract import NUM_CLASSES, SIDE, ModelInfo
from service.errors import ServiceError, error_for
from service.workers import extras
from service.workers.extras import (
    EXPLAIN,
    TRACED,
    WITH_IMAGE,
    WITH_PIXELS,
    Explanations,
    WorkerTiming,
)

# Request: id, kind, flags, image count, when the server sent it (time.monotonic: the same
# clock in every process of the machine), payload length; then the payload.
_REQUEST = struct.Struct("<IBBIdI")
# Reply: id, kind, images in the model call this input ran in (set on the first reply of each
# call only, else 0), seconds of the model call (first reply only), payload length; then the
# payload.
_REPLY = struct.Struct("<IBIdI")
_ERROR_HEAD = struct.Struct("<H")  # an error payload: code length; code; message (UTF-8)
_LENGTH = struct.Struct("<I")
_WAIT = struct.Struct("<f")
REQUEST_SIZE = _REQUEST.size
REPLY_SIZE = _REPLY.size

ENCODED, TENSOR = 1, 2  # request kinds: images to decode, or ready (n, 1, 28, 28) floats
# Reply kinds: per-image results, a tensor's probabilities, or why a tensor's model call failed.
IMAGES, PROBABILITIES, ERROR = 3, 4, 7
READY, FAILED = 5, 6  # a worker's first reply: its model's ModelInfo JSON, or why it cannot load
# Request flags (WITH_IMAGE, EXPLAIN, TRACED, WITH_PIXELS), what they add: service/workers/extras.py
SHADOW = 8  # after a batch's replies (never instead): its shadow model's report (ShadowReport)

IMAGE_FLOATS = SIDE * SIDE
ID_LIMIT = 2**32  # request ids wrap around within the header's uint32


class RequestHead(NamedTuple):
    request_id: int
    kind: int
    flags: int
    images: int  # ("count" would hide tuple.count)
    sent_at: float
    length: int

    def pack(self) -> bytes:
        return _REQUEST.pack(*self)

    @classmethod
    def unpack_from(cls, buffer: bytes | bytearray, offset: int = 0) -> RequestHead:
        return cls._make(_REQUEST.unpack_from(buffer, offset))


class ReplyHead(NamedTuple):
    request_id: int
    kind: int
    batch_size: int
    model_s: float
    length: int

    def pack(self) -> bytes:
        return _REPLY.pack(*self)

    @classmethod
    def unpack_from(cls, buffer: bytes | bytearray, offset: int = 0) -> ReplyHead:
        return cls._make(_REPLY.unpack_from(buffer, offset))


def announcement(kind: int, payload: bytes) -> bytes:
    """A worker's first frame: READY with its ModelInfo JSON, or FAILED with the reason."""
    return ReplyHead(0, kind, 0, 0.0, len(payload)).pack() + payload


def encode_error(exc: ServiceError) -> bytes:
    code = exc.code.encode()
    return _ERROR_HEAD.pack(len(code)) + code + exc.message.encode()


def decode_error(payload: bytes) -> ServiceError:
    (code_length,) = _ERROR_HEAD.unpack_from(payload)
    code = payload[_ERROR_HEAD.size : _ERROR_HEAD.size + code_length].decode()
    return error_for(code, payload[_ERROR_HEAD.size + code_length :].decode())


def pack_images(images: Sequence[bytes]) -> bytes:
    """An ENCODED payload: each image's length (uint32), then the images."""
    return struct.pack(f"<{len(images)}I", *map(len, images)) + b"".join(images)


def unpack_images(payload: bytes, count: int) -> list[bytes]:
    images, offset = [], count * _LENGTH.size
    for length in struct.unpack_from(f"<{count}I", payload):
        images.append(payload[offset : offset + length])
        offset += length
    return images


@dataclass(slots=True)
class ImageResults:
    """The reply to an ENCODED frame of ``count`` images, each answered or refused."""

    probabilities: np.ndarray  # (count, 10) float32; the rows of refused images are zeros
    seconds: tuple[float, ...]  # each image's own decode + normalisation time
    waits: tuple[float, ...]  # each answered image's wait for its model call, besides that
    errors: dict[int, ServiceError]  # the refused images, by position in the frame
    pngs: list[bytes] | None  # what the model saw, when the frame asked for it
    explanations: Explanations | None = None  # when the frame asked for them (EXPLAIN)
    pixels: list[bytes | None] | None = None  # the inputs as 8-bit pixels (WITH_PIXELS)
    timing: WorkerTiming | None = None  # the worker's timings, when the frame was TRACED
    # Set by the server from the worker that answered: the model it opened (the answers
    # name it) and the seconds of the model call these images ran in.
    model: ModelInfo | None = None
    call_s: float = 0.0


def encode_image_results(
    probabilities: np.ndarray,
    seconds: Sequence[float],
    waits: Sequence[float],
    errors: Sequence[ServiceError | None],
    pngs: Sequence[bytes] | None,
    explanations: Explanations | None = None,
    timing: Sequence[float] | None = None,
    pixels: Sequence[bytes | None] | None = None,
) -> bytes:
    """An IMAGES payload: error and PNG lengths (uint32 each, per image), seconds and waits
    (float32), the probabilities, then the encoded errors and the PNGs; then the
    explanations and the timings when the frame asked for them."""
    count = len(errors)
    encoded = [b"" if error is None else encode_error(error) for error in errors]
    pngs = pngs or [b""] * count
    return b"".join(
        [
            struct.pack(
                f"<{2 * count}I{2 * count}f", *map(len, encoded), *map(len, pngs), *seconds, *waits
            ),
            np.ascontiguousarray(probabilities, np.float32).tobytes(),
            *encoded,
            *pngs,
            b"" if explanations is None else extras.encode_explanations(explanations),
            b"" if pixels is None else extras.encode_pixels(pixels),
            b"" if timing is None else extras.encode_timing(timing),
        ]
    )


def decode_image_results(
    payload: bytes, count: int, flags: int, sent_at: float = 0.0
) -> ImageResults:
    """The results of a frame sent with ``flags`` (at ``sent_at``, for the timings)."""
    table = struct.Struct(f"<{2 * count}I{2 * count}f")
    fields = table.unpack_from(payload)
    errors_at, pngs_at = fields[:count], fields[count : 2 * count]
    probabilities = np.frombuffer(payload, np.float32, count * NUM_CLASSES, table.size)
    offset = table.size + probabilities.nbytes
    errors: dict[int, ServiceError] = {}
    if any(errors_at):
        for index, length in enumerate(errors_at):
            if length:
                errors[index] = decode_error(payload[offset : offset + length])
                offset += length
    pngs = None
    if flags & WITH_IMAGE:
        pngs = []
        for length in pngs_at:
            pngs.append(payload[offset : offset + length])
            offset += length
    results = ImageResults(
        probabilities.reshape(count, NUM_CLASSES),
        fields[2 * count : 3 * count],
        fields[3 * count :],
        errors,
        pngs,
    )
    if flags & EXPLAIN:
        results.explanations, offset = extras.decode_explanations(payload, offset, count)
    if flags & WITH_PIXELS:
        results.pixels, offset = extras.decode_pixels(payload, offset, count)
    if flags & TRACED:
        results.timing = extras.decode_timing(payload, offset, sent_at)
    return results


def encode_tensor_probabilities(probabilities: np.ndarray, wait_s: float) -> bytes:
    """A PROBABILITIES payload: the (count, 10) float32 rows, then the frame's wait for its
    model call (float32)."""
    return np.ascontiguousarray(probabilities, np.float32).tobytes() + _WAIT.pack(wait_s)


def tensor_probabilities(payload: bytes, count: int) -> tuple[np.ndarray, float]:
    """The (count, 10) probabilities of a PROBABILITIES payload (a view, not a copy) and the
    frame's wait."""
    size = count * NUM_CLASSES
    rows = np.frombuffer(payload, np.float32, size).reshape(count, NUM_CLASSES)
    (wait_s,) = _WAIT.unpack_from(payload, size * rows.itemsize)
    return rows, wait_s


_SHADOW_HEAD = struct.Struct("<II")  # inputs compared, inputs dropped; then confidences, agree


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """The shadow model on a batch's sampled inputs: per input whether its digit agreed with
    the served model's, and its top probability; the call's seconds; inputs it skipped."""

    agree: np.ndarray  # (n,) bool
    confidence: np.ndarray  # (n,) float32
    seconds: float
    dropped: int


def encode_shadow(report: ShadowReport) -> bytes:
    """A SHADOW frame (request id 0: it answers no request; batch size 0: no served call)."""
    count = len(report.agree)
    payload = (
        _SHADOW_HEAD.pack(count, report.dropped)
        + np.asarray(report.confidence, np.float32).tobytes()
        + np.asarray(report.agree, np.uint8).tobytes()
    )
    return ReplyHead(0, SHADOW, 0, report.seconds, len(payload)).pack() + payload


def decode_shadow(head: ReplyHead, payload: bytes) -> ShadowReport:
    count, dropped = _SHADOW_HEAD.unpack_from(payload)
    offset = _SHADOW_HEAD.size
    confidence = np.frombuffer(payload, np.float32, count, offset)
    agree = np.frombuffer(payload, np.uint8, count, offset + count * confidence.itemsize)
    return ShadowReport(agree.astype(bool), confidence, head.model_s, dropped)
