"""The progress slot: a few shared bytes per worker (a memfd mapped by both processes) in
which the worker writes which image (request and position in its frame) it is decoding and
since when. Workers take their inputs in batches, so the order of the replies does not say
which image a stuck or crashed worker was on; the slot does, at the cost of one memory write
per image and stage and no syscall."""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The request id and the image's position in its frame being decoded, and
# since when (0.0 = not decoding).
_SLOT = struct.Struct("<IId")
IDLE = 0.0


@dataclass(frozen=True, slots=True)
class Progress:
    request_id: int
    index: int  # the image's position in its frame
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

    def marker(self, owners: Sequence[tuple[int, int]]) -> Callable[[int, float], None]:
        """What the worker calls before every stage of every image of a batch: the image
        (its index in the batch; ``owners`` gives each one's request id and position in its
        frame) is being worked on now, after ``spent`` seconds on it in earlier stages, so
        the server's watchdog sees the image's own time, not its batch's. One call, no
        syscall: it runs several times per image."""
        pack, buffer, clock = _SLOT.pack_into, self._map, time.monotonic

        def mark(index: int, spent: float) -> None:
            request_id, position = owners[index]
            pack(buffer, 0, request_id, position, clock() - spent)

        return mark

    def idle(self) -> None:
        _SLOT.pack_into(self._map, 0, 0, 0, IDLE)

    def read(self) -> Progress:
        return Progress(*_SLOT.unpack_from(self._map, 0))

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
