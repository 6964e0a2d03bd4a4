"""What C libraries print on a worker's stderr, as JSON log lines.

libpng (under OpenCV) and libtiff (under Pillow) print a line for each broken file a client
sends ("libpng error: IDAT: CRC error"); ONNX Runtime prints its own warnings. Written
straight to the process's stderr they broke the JSON log, as often as a client liked. Here
fd 2 becomes a pipe; a thread turns each line into a warning of the ``service.native``
logger, at most ``LINES_PER_S`` a second (the rest counted in one line).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
from typing import TextIO

from service.logs import Throttled

LINES_PER_S = 10
MAX_LINE_CHARS = 500  # a library's line quoting a client's bytes stays short
logger = logging.getLogger("service.native")


def capture_native_output() -> TextIO:
    """Point fd 2 at the relay's pipe; return the process's real stderr, which becomes
    ``sys.stderr`` (the JSON handler's and a crash's: faulthandler writes there)."""
    real = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = real
    faulthandler.enable(real)
    threading.Thread(target=_relay, args=(read_end,), name="native-stderr", daemon=True).start()
    return real


def _relay(read_end: int) -> None:
    """Each line as a log record; never stops on a bad one (a full pipe would block the C
    code writing to it)."""
    throttled = Throttled(logger, LINES_PER_S, "lines from C libraries")
    with os.fdopen(read_end, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                throttled.warning("native", "%s", line[:MAX_LINE_CHARS])
            except Exception:  # logging failed: the line is lost, the relay goes on
                continue
