"""The wire between the server process and its worker processes: frames and a progress slot.

Both sides import this module and nothing of each other. Frames are fixed ``struct`` headers
followed by a payload, over one socketpair per worker: no pickle, nothing a worker could send
that the server would execute.

The progress slot is a few shared bytes per worker (a memfd mapped by both processes) in
which the worker writes which request it is decoding and since when. Workers take their
inputs in batches, so the order of the replies no longer says which image a stuck or crashed
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

from service.errors import ServiceError

# Request: id, kind, flags, image count, when the server sent it (time.monotonic: the same
# clock in every process of the machine), payload length; then the payload.
REQUEST = struct.Struct("<IBBIdI")
# Reply: id, kind, images in the model call this input ran in (set on the first reply of each
# call only, else 0), seconds of decode + normalisation, seconds waiting for the model call
# after that, seconds of the model call (first reply only), payload length; then the payload.
REPLY = struct.Struct("<IBIdddI")
ERROR_HEAD = struct.Struct("<HH")  # an error payload: status, code length; code; message

ENCODED, TENSOR = 1, 2  # request kinds: image bytes to decode, or ready (n, 1, 28, 28) floats
RESULT, ERROR, READY = 3, 4, 5  # reply kinds
WITH_IMAGE = 1  # request flag: also send back the 28x28 image the model saw

SIDE = 28
IMAGE_FLOATS = SIDE * SIDE
CLASSES = 10
FLOAT_BYTES = 4
ID_LIMIT = 2**32  # request ids wrap around within the header's uint32

# Progress slot: the request id being decoded, and since when (0.0 = not decoding).
SLOT = struct.Struct("<Id")
IDLE = 0.0


@dataclass(frozen=True, slots=True)
class Progress:
    request_id: int
    since: float  # time.monotonic(); IDLE when the worker decodes nothing


class ProgressSlot:
    """The shared bytes of one worker: ``new()`` in the server, ``ProgressSlot(fd)`` in the
    worker. The mapping keeps its own reference to the file, so both may close ``fd``."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, SLOT.size)

    @classmethod
    def new(cls) -> tuple[ProgressSlot, int]:
        fd = _anonymous_file(SLOT.size)
        return cls(fd), fd

    def decoding(self, request_id: int, spent: float = 0.0) -> None:
        """The worker is on ``request_id`` now, after ``spent`` seconds on it in earlier
        stages: the server's watchdog sees the image's own time, not its batch's."""
        SLOT.pack_into(self._map, 0, request_id, time.monotonic() - spent)

    def idle(self) -> None:
        SLOT.pack_into(self._map, 0, 0, IDLE)

    def read(self) -> Progress:
        request_id, since = SLOT.unpack_from(self._map, 0)
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


def encode_error(exc: ServiceError) -> bytes:
    code = exc.code.encode()
    return ERROR_HEAD.pack(exc.status_code, len(code)) + code + exc.message.encode()


def _error_classes() -> dict[str, type[ServiceError]]:
    """Fixed-code ServiceError subclasses by code, to raise the same class as in-process."""
    found: dict[str, type[ServiceError]] = {}
    pending: list[type[ServiceError]] = [ServiceError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        code = getattr(cls, "error_code", None)
        if isinstance(code, str) and not cls.__subclasses__():
            found.setdefault(code, cls)
    return found


_ERROR_CLASSES = _error_classes()


def decode_error(payload: bytes) -> ServiceError:
    status, code_length = ERROR_HEAD.unpack_from(payload)
    code = payload[ERROR_HEAD.size : ERROR_HEAD.size + code_length].decode()
    message = payload[ERROR_HEAD.size + code_length :].decode()
    cls = _ERROR_CLASSES.get(code, ServiceError)
    exc = cls.__new__(cls)  # subclasses fix status/code in __init__; set the sent ones
    ServiceError.__init__(exc, status, code, message)
    return exc
