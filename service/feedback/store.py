"""The corrections folder: 28x28 PNGs and one JSON line per correction (docs/design.md,
section 7), read by ``python -m training train --extra-data`` and ``evaluate --data``.

Every name in it is the service's own (a timestamp, a counter and random hex): nothing a
request sent ever becomes part of a path. An image is written under a temporary name and
renamed, then its line is appended in one write, so a reader never meets a line whose image
is missing; a write that fails (a full disk) is undone, the image removed and the index cut
back to its length before, so no half line breaks the training's reading of the folder. The
folder holds at most ``max_records`` corrections; one deleted under the service is made
again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from service.contract import SIDE
from service.errors import FeedbackFull
from service.logs import iso_utc
from service.repository.staging import write_whole

INDEX = "index.jsonl"
IMAGES = "images"

logger = logging.getLogger(__name__)


class CorrectionStore:
    """Appends corrections to ``folder`` (created if missing); raises OSError at start when
    the folder cannot be written."""

    def __init__(self, folder: Path, max_records: int) -> None:
        self.folder = folder
        self.max_records = max_records
        (folder / IMAGES).mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")  # fail now, not on the first correction
        probe.unlink()
        index = folder / INDEX
        self.records = _records(index)
        self._lock = threading.Lock()
        self._serial = 0

    def append(self, record: dict[str, Any], pixels: bytes) -> str:
        """Write ``pixels`` (28x28, 8-bit) as a PNG and ``record`` (plus its id and image
        path); the record's id.
        Raises FeedbackFull at the cap. Blocking: callers run it in a thread."""
        with self._lock:
            if self.records >= self.max_records:
                raise FeedbackFull(
                    f"the corrections folder holds its limit of {self.max_records} records"
                )
            self._serial += 1
            now = time.time()
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
            record_id = f"{stamp}-{self._serial:06d}-{secrets.token_hex(4)}"
            image = f"{IMAGES}/{record_id}.png"
            line = {"id": record_id, "image": image, **record, "corrected_at": iso_utc(now)}
            try:
                self._write(record_id, json.dumps(line, separators=(",", ":")) + "\n", pixels)
            except OSError as exc:
                raise FeedbackFull(
                    f"the corrections folder cannot store this correction: "
                    f"{exc.strerror or type(exc).__name__}"
                ) from None
            self.records += 1
            return record_id

    def _write(self, record_id: str, line: str, pixels: bytes) -> None:
        """The image, then its index line; after a failure neither is left."""
        images = self.folder / IMAGES
        index = self.folder / INDEX
        if not images.is_dir():  # deleted under the service: counted again from nothing
            images.mkdir(parents=True, exist_ok=True)
            self.records = _records(index)
        final = images / f"{record_id}.png"
        try:
            write_whole(final, gray_png(pixels))  # leaves no part of the image behind itself
            _append_whole(index, line.encode())
        except OSError:
            with contextlib.suppress(OSError):
                final.unlink(missing_ok=True)
            raise


def gray_png(pixels: bytes, side: int = SIDE) -> bytes:
    """A square 8-bit grayscale PNG of ``pixels`` (row by row). Written here because the
    front-end process loads no imaging library (docs/design.md section 6): the format's
    framing is a few chunks around zlib data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + pixels[row * side : (row + 1) * side] for row in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(rows)),
            chunk(b"IEND", b""),
        ]
    )


def _append_whole(index: Path, line: bytes) -> None:
    """``line`` at the end of ``index`` in one write, or not at all: a short or failed write
    is cut back off."""
    handle = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        length = os.fstat(handle).st_size
        try:
            if os.write(handle, line) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            os.ftruncate(handle, length)
            raise
    finally:
        os.close(handle)


def _records(index: Path) -> int:
    """The corrections ``index`` holds (0 when there is none yet); a last line without its
    end (a write cut by a crash or a full disk before this service undid such writes) is cut
    off first, and said."""
    if not index.exists():
        return 0
    data = index.read_bytes()
    if data and not data.endswith(b"\n"):
        whole = data.rfind(b"\n") + 1
        with index.open("r+b") as handle:
            handle.truncate(whole)
        logger.warning("cut a partial last line (%d bytes) off %s", len(data) - whole, index)
        data = data[:whole]
    return sum(1 for line in data.splitlines() if line.strip())
