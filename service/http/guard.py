"""The limits on HTTP connections and the sweep that enforces their deadlines.

The protocol that applies them per connection is service/http/connections.py; this module
holds what all connections of a process share: the limits, the set of open connections, one
sweep per second over their deadlines, the refusal answer and how a refused connection is
closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from service.errors import ServiceError
from service.http.v2.errors import error_body
from service.metrics import Metrics

logger = logging.getLogger("service.http")

GUARD = "connection_guard"  # the lifespan state key the protocol finds its guard under
SWEEP_S = 1.0
# After a refusal the connection is half-closed and what the client still sends is read and
# dropped for this long: closing at once, with its unread bytes in the socket, would make the
# kernel send a reset that can reach the client before the answer.
LINGER_S = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_bytes: int
    head_timeout_s: float
    body_grace_s: float
    min_body_rate: float  # bytes per second, averaged since the head arrived
    keep_alive_s: float
    max_connections: int
    retry_after_s: int


class Guarded(Protocol):
    """A connection under the guard (service/http/connections.py's GuardedProtocol)."""

    def check_deadline(self, now: float, limits: ConnectionLimits) -> None: ...


class ConnectionGuard:
    """The limits, the open connections and the sweep that enforces their deadlines."""

    def __init__(self, limits: ConnectionLimits, metrics: Metrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.connections: set[Guarded] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self.sweep)

    def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()

    def sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check_deadline(now, self.limits)
        self.start()

    def refused(self, reason: str, client: Any, detail: str) -> None:
        self.metrics.rejected.labels(reason).inc()
        logger.warning("refused %s: %s", client[0] if client else "a client", detail)


def body_too_slow(stopped: float, elapsed: float, received: int, limits: ConnectionLimits) -> str:
    """Why a request body is too slow ("" while it is not): it has not moved for the grace
    period (a client that sent most of a large body and then nothing would otherwise hold its
    buffer for as long as its average allows), or ``received`` bytes in ``elapsed`` seconds
    since the head are under the minimum rate once the grace period is over."""
    if stopped > limits.body_grace_s:
        return f"no request body arrived for {limits.body_grace_s:g} s"
    if elapsed > limits.body_grace_s and received < limits.min_body_rate * elapsed:
        return (
            f"the request body arrived at {received / elapsed:.0f} bytes/s, under the minimum "
            f"of {limits.min_body_rate:g} bytes/s"
        )
    return ""


def refusal(error: ServiceError, path: str = "") -> bytes:
    """The whole answer to ``error`` that closes the connection, for a request to ``path``
    (as far as it was read)."""
    body = orjson.dumps(error_body(path, error.code, error.message))
    head = [
        STATUS_LINE[error.status_code],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        *(
            f"{name.lower()}: {value}\r\n".encode("latin-1")
            for name, value in error.headers.items()
        ),
        b"connection: close\r\n\r\n",
    ]
    return b"".join(head) + body


def linger(transport: asyncio.Transport) -> None:
    """Send what is written, stop writing, close after LINGER_S (the protocol drops what
    arrives meanwhile)."""
    if transport.can_write_eof():
        transport.write_eof()
    asyncio.get_running_loop().call_later(LINGER_S, transport.close)
