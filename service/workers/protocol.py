"""The wire between the server process and its worker processes: frames and a progress slot.

Both sides import this module and nothing of each other. A frame is a fixed ``struct``
header followed by a payload, over one socketpair per worker: no pickle, nothing a worker
could send that the server would execute. ``RequestHead`` and ``ReplyHead`` are the only
places that know a header's fields and their order.

The progress slot is a few shared bytes per worker (a memfd mapped by both processes) in
which the worker writes which request it is decoding and since when. Workers take their
inputs in batches, so the order of the replies does not say which image a stuck or crashed
worker was on; the slot does, at the cost of one memory write per image and stage and no
syscall.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from service.contract import NUM_CLASSES, SIDE
from service.errors import ServiceError, error_for

# Request: id, kind, flags, image count, when the server sent it (time.monotonic: the same
# clock in every process of the machine), payload length; then the payload.
_REQUEST = struct.Struct("<IBBIdI")
# Reply: id, kind, images in the model call this input ran in (set on the first reply of each
# call only, else 0), seconds of decode + normalisation, seconds waiting for the model call
# after that, seconds of the model call (first reply only), payload length; then the payload.
_REPLY = struct.Struct("<IBIdddI")
_ERROR_HEAD = struct.Struct("<H")  # an error payload: code length; code; message (UTF-8)
REQUEST_SIZE = _REQUEST.size
REPLY_SIZE = _REPLY.size

ENCODED, TENSOR = 1, 2  # request kinds: image bytes to decode, or ready (n, 1, 28, 28) floats
RESULT, ERROR = 3, 4  # reply kinds: probabilities (and a PNG), or an encoded ServiceError
READY, FAILED = 5, 6  # a worker's first reply: its model's ModelInfo JSON, or why it cannot load
SHADOW = 7  # after a batch's replies (never instead): its shadow model's report (ShadowReport)
WITH_IMAGE = 1  # request flag: also send back the 28x28 image the model saw, as a PNG

IMAGE_FLOATS = SIDE * SIDE
FLOAT_BYTES = 4
ID_LIMIT = 2**32  # request ids wrap around within the header's uint32


class RequestHead(NamedTuple):
    request_id: int
    kind: int
    flags: int
    count: int
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
    decode_s: float
    wait_s: float
    model_s: float
    length: int

    def pack(self) -> bytes:
        return _REPLY.pack(*self)

    @classmethod
    def unpack_from(cls, buffer: bytes | bytearray, offset: int = 0) -> ReplyHead:
        return cls._make(_REPLY.unpack_from(buffer, offset))


def announcement(kind: int, payload: bytes) -> bytes:
    """A worker's first frame: READY with its ModelInfo JSON, or FAILED with the reason."""
    return ReplyHead(0, kind, 0, 0.0, 0.0, 0.0, len(payload)).pack() + payload


def encode_error(exc: ServiceError) -> bytes:
    code = exc.code.encode()
    return _ERROR_HEAD.pack(len(code)) + code + exc.message.encode()


def decode_error(payload: bytes) -> ServiceError:
    (code_length,) = _ERROR_HEAD.unpack_from(payload)
    code = payload[_ERROR_HEAD.size : _ERROR_HEAD.size + code_length].decode()
    return error_for(code, payload[_ERROR_HEAD.size + code_length :].decode())


def encode_result(probabilities: bytes, png: bytes | None) -> bytes:
    """A RESULT payload: the probabilities (count, 10) float32, then the PNG if asked for."""
    return probabilities if png is None else probabilities + png


def result_probabilities(payload: bytes, count: int) -> np.ndarray:
    """The (count, 10) probabilities of a RESULT payload (a view of it, not a copy)."""
    return np.frombuffer(payload, np.float32, count * NUM_CLASSES).reshape(count, NUM_CLASSES)


def result_png(payload: bytes, count: int) -> bytes | None:
    """The PNG after the probabilities of a RESULT payload, if it carries one."""
    return payload[count * NUM_CLASSES * FLOAT_BYTES :] or None


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
    """A SHADOW frame (request id 0: it answers no request)."""
    count = len(report.agree)
    payload = (
        _SHADOW_HEAD.pack(count, report.dropped)
        + np.asarray(report.confidence, np.float32).tobytes()
        + np.asarray(report.agree, np.uint8).tobytes()
    )
    return ReplyHead(0, SHADOW, count, 0.0, 0.0, report.seconds, len(payload)).pack() + payload


def decode_shadow(head: ReplyHead, payload: bytes) -> ShadowReport:
    count, dropped = _SHADOW_HEAD.unpack_from(payload)
    offset = _SHADOW_HEAD.size
    confidence = np.frombuffer(payload, np.float32, count, offset)
    agree = np.frombuffer(payload, np.uint8, count, offset + count * FLOAT_BYTES).astype(bool)
    return ShadowReport(agree, confidence, head.model_s, dropped)


# Progress slot: the request id being decoded, and since when (0.0 = not decoding).
_SLOT = struct.Struct("<Id")
IDLE = 0.0


@dataclass(frozen=True, slots=True)
class Progress:
    request_id: int
    since: float  # time.monotonic(); IDLE when the worker decodes nothing


class ProgressSlot:
    """The shared bytes of one worker: ``new()`` in the server, ``ProgressSlot(fd)`` in the
    worker. The mapping keeps its own reference to the file, so both may close ``fd``."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, _SLOT.size)

    @classmethod
    def new(cls) -> tuple[ProgressSlot, int]:
        fd = _anonymous_file(_SLOT.size)
        return cls(fd), fd

    def decoding(self, request_id: int, spent: float = 0.0) -> None:
        """The worker is on ``request_id`` now, after ``spent`` seconds on it in earlier
        stages: the server's watchdog sees the image's own time, not its batch's."""
        _SLOT.pack_into(self._map, 0, request_id, time.monotonic() - spent)

    def idle(self) -> None:
        _SLOT.pack_into(self._map, 0, 0, IDLE)

    def read(self) -> Progress:
        request_id, since = _SLOT.unpack_from(self._map, 0)
        return Progress(request_id, since)

    def close(self) -> None:
        self._map.close()


def _anonymous_file(size: int) -> int:
    """A file of ``size`` zero bytes with no name (memfd on Linux, an unlinked file elsewhere)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("digits-worker-progress", 0)
    else:  # pragma: no cover - macOS development machines
        handle, path = tempfile.mkstemp(prefix="digits-progress-")
        os.unlink(path)
        fd = handle
    os.ftruncate(fd, size)
    return fd
