"""What a worker prints on its stderr, relayed by the server as JSON log lines.

Workers log JSON (service/logs.py), but the C libraries under them print plain lines on the
same stderr: libpng (under OpenCV) one for each broken PNG a client sends ("libpng error:
IDAT: CRC error"), libtiff, ONNX Runtime, a C++ runtime's last words before an abort. The
server reads each worker's stderr through a pipe: a JSON line passes as it is, any other
becomes a WARNING of ``service.native``, at most ``LINES_PER_S`` a second from each worker
(the rest counted in one line a second later). Read here rather than in the worker, nothing
is lost when the worker dies.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys

from service.logs import Throttled

LINES_PER_S = 10
MAX_LINE_CHARS = 500  # a library's line quoting a client's bytes stays short
# A line without its end held no longer: a worker's JSON line with a traceback is a few KB.
MAX_HELD_BYTES = 64 * 1024
logger = logging.getLogger("service.native")
# Terminal colours: ONNX Runtime colours its warnings, which a JSON log showed as \u001b[0;93m.
_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


class StderrRelay(asyncio.Protocol):
    """The read end of one worker's stderr."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._buffer = b""
        self._lines = Throttled(logger, LINES_PER_S, "lines from C libraries")
        self._flush_due: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self._relay(line)
        if len(self._buffer) > MAX_HELD_BYTES:  # no end of line in sight: said, not hoarded
            self._relay(self._buffer)
            self._buffer = b""

    def connection_lost(self, exc: Exception | None) -> None:
        """The worker is gone (or closed its stderr): its last words, then the count of any
        held back."""
        self._relay(self._buffer)
        self._buffer = b""
        if self._flush_due is not None:
            self._flush_due.cancel()
        self._lines.flush(force=True)

    def _relay(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if text.startswith("{"):  # the worker's own log line, JSON already
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            return
        text = _COLOURS.sub("", text)
        if text:
            self._lines.warning("native", "worker %d: %s", self._pid, text[:MAX_LINE_CHARS])
            if self._flush_due is None:  # the count of lines held back, once their second ends
                self._flush_due = asyncio.get_running_loop().call_later(1.0, self._flush)

    def _flush(self) -> None:
        self._flush_due = None
        self._lines.flush()
