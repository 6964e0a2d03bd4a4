"""JSON logs on stderr, one object per line, with the request id of the current request.

Access lines (one per request) skip the ``logging`` machinery: ``AccessLog`` writes them with
orjson, in one write per event-loop iteration, because formatting a record through
``logging`` cost the event loop more than the rest of a /predict (docs/performance.md). The
line's shape is the same as every other log line's.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
import time
from collections import Counter
from typing import Any, TextIO

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "digits_request_id", default=None
)
_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {
    "message",
    "asctime",
    "color_message",
}


def iso_utc(seconds: float) -> str:
    """``time.time()`` seconds as the logs and the feedback index write them: ISO 8601, UTC,
    milliseconds."""
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int((seconds % 1) * 1000):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    """``json.dumps`` of the record: a quote or newline in a message cannot break the line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """Route our loggers and uvicorn's through one JSON handler (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    if not any(isinstance(f, UvicornLevels) for f in logging.getLogger("uvicorn.error").filters):
        logging.getLogger("uvicorn.error").addFilter(UvicornLevels())
    # Our middleware writes the access line (with request id and route); uvicorn's is a duplicate.
    logging.getLogger("uvicorn.access").disabled = True
    # Pillow logs at ERROR what it finds wrong in a client's file, as often as a client sends
    # one; the client's 400 says it, and our log is for our errors.
    logging.getLogger("PIL").setLevel(logging.CRITICAL)


class UvicornLevels(logging.Filter):
    """Two of uvicorn's lines at the level an operator needs, WARNING: a drain that ran out of
    DIGITS_GRACEFUL_SHUTDOWN_SECONDS ("Cancel 0 running task(s), timeout graceful shutdown
    exceeded") is logged at ERROR, though it is the documented end of a drain (what still
    arrives is answered 503), no fault to page anyone for; and with several front ends, one
    that died ("Child process [N] died": killed, crashed; uvicorn starts another) at INFO,
    where a front end crashing again and again went unseen beside the workers' WARNINGs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        drain = message.startswith("Cancel %s running task(s)")
        if drain or (message.startswith("Child process [") and message.endswith("] died")):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class Throttled:
    """A warning that can come thousands of times a second (a flood of refused connections):
    at most ``per_second`` lines a second of each kind; the rest are counted and said in one
    line once that second is over (``flush``, which the caller's timer also calls). The
    metrics count every one; the log has only to show that they happened."""

    def __init__(self, logger: logging.Logger, per_second: int, what: str) -> None:
        self._logger, self._per_second, self._what = logger, per_second, what
        self._second = int(time.monotonic())
        self._said: Counter[str] = Counter()
        self._held: Counter[str] = Counter()

    def warning(self, kind: str, message: str, *args: object) -> None:
        self.flush()
        if self._said[kind] < self._per_second:
            self._said[kind] += 1
            self._logger.warning(message, *args)
        else:
            self._held[kind] += 1

    def flush(self, *, force: bool = False) -> None:
        """Say what was held back in a second that is over (``force``: now, as the source
        of the lines is going away)."""
        second = int(time.monotonic())
        if second == self._second and not force:
            return
        for kind, count in self._held.items():
            self._logger.warning(
                "%d more %s %s in the last second, not logged one by one",
                count,
                kind,
                self._what,
                extra={"reason": kind, "count": count},
            )
        self._second = second
        self._said.clear()
        self._held.clear()


ACCESS_LOGGER = "service.access"


class AccessLog:
    """The access lines of one server process: ``write`` queues a line, and the queue goes to
    ``stream`` in one write when the event loop next gets round to it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._second = -1
        self._prefix = ""
        self.enabled = logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)

    def write(self, message: str, request_id: str, fields: dict[str, Any]) -> None:
        now = time.time()
        entry = {
            "ts": self._ts(now),
            "level": "INFO",
            "logger": ACCESS_LOGGER,
            "message": message,
            "request_id": request_id,
            **fields,
        }
        if not self._lines:
            asyncio.get_running_loop().call_soon(self.flush)
        self._lines.append(orjson.dumps(entry, default=str))

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        stream = self._stream or sys.stderr  # sys.stderr as it is now: tests replace it
        stream.write(b"\n".join(lines).decode() + "\n")
        stream.flush()

    def _ts(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"
