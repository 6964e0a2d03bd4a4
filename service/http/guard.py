"""The limits on HTTP connections and the sweep that enforces their deadlines.

The protocol that applies them per connection is service/http/connections.py; this module
holds what all connections of a process share: the limits, the set of open connections, one
sweep per second over their deadlines, the refusal answer and how a refused connection is
closed. The limits:
- a cap on the request head, a chunked body's trailer fields included: 431 (JSON), close;
  the body's chunk extensions and trailer fields together under the same cap: 413, close;
- a deadline for the whole head, from the request's first byte (a brand-new connection's
  from its opening): a client sending one header line a second cannot dodge it. 408, close;
- a minimum average rate for the body once the head is in, after a grace period, so a
  trickle cannot hold a connection either. 408, close. An answer of which the client reads
  nothing for that grace period is dropped with its connection;
- a keep-alive idle timeout and a cap on open connections. At the cap, the connections
  longest waiting for a request (idle, or still sending a head, for at least ROOM_AGE_S,
  their answers all received) are closed to make room, as nginx reuses its idle
  connections: sockets held open without requests (a slowloris) keep no client out,
  health probes included. Only when every connection has a request in hand, or is younger
  than ROOM_AGE_S, is a new one refused: 503 + Retry-After.
One sweep per second per process checks every connection's deadline, so the hot path pays
no timer per request.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from service.errors import Overloaded, PayloadTooLarge, ServiceError
from service.http.body_budget import BodyBudget, Holder
from service.http.unread import Unread
from service.http.v2.errors import error_body
from service.logs import Throttled, request_id
from service.metrics import Metrics

logger = logging.getLogger("service.http")

GUARD = "connection_guard"  # the lifespan state key the protocol finds its guard under
# The scope key of a request the connection refused while the app had it (a body too slow,
# broken chunks): the status the client got, for its metrics and access line (observability).
REFUSED = "digits.refused"
REFUSED_BYTES = "digits.refused_bytes"  # its body's size, for the access log's bytes_sent
SWEEP_S = 1.0
REFUSAL_LINES_PER_S = 10  # of each reason; a flood's others are summed in one line a second
SHUT_POLL_S = 0.05  # how often the exit checks whether the refused connections have closed
# After a refusal the connection is half-closed and what the client still sends is read and
# dropped for this long: closing at once, with its unread bytes in the socket, would make the
# kernel send a reset that can reach the client before the answer.
LINGER_S = 2.0
# A chunk's size line and the line end after its data: 8 hexadecimal digits (a chunk of up to
# 4 GiB), a short extension and two CRLFs fit; more is counted as extension bytes.
CHUNK_FRAMING = 16
# Connections closed at once to make room at the cap (nginx frees 32 of its reusable ones):
# one scan of the open connections serves the next new ones too.
ROOM = 32
# ...among those that have waited this long: a client sends its head within a round trip of
# connecting, so a younger connection is one whose request is on its way.
ROOM_AGE_S = 1.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_bytes: int
    head_timeout_s: float
    body_grace_s: float
    min_body_rate: float  # bytes per second, averaged since the head arrived
    keep_alive_s: float
    max_connections: int
    retry_after_s: int
    max_body_bytes_in_flight: int  # service/http/body_budget.py


# What a connection is waiting for, and so which deadline applies.
HEAD, BODY, APP, IDLE = "head", "body", "app", "idle"


class Guarded(Holder, Protocol):
    """A connection under the guard (service/http/connections.py's GuardedProtocol); as a
    Holder, it has a share of the body budget (body_budget.py)."""

    transport: asyncio.Transport
    unread: Unread
    phase: str  # HEAD, BODY, APP or IDLE
    since: float  # when it entered the phase
    spoke: bool  # has the client sent anything at all
    body_bytes: int
    body_at: float  # when the body last made progress (or began)

    def check_deadline(self, now: float, limits: ConnectionLimits) -> None: ...

    def waiting_for_request(self) -> bool: ...

    def give_way(self, error: ServiceError) -> None: ...


class ConnectionGuard:
    """The limits, the open connections and the sweep that enforces their deadlines."""

    def __init__(self, limits: ConnectionLimits, metrics: Metrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.connections: set[Guarded] = set()
        self.bodies = BodyBudget(limits.max_body_bytes_in_flight, limits.min_body_rate)
        # Closed to make room and not yet gone: uvicorn counts them until their
        # connection_lost, which comes after every connection accepted with the new one.
        self.making_room: set[Guarded] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self.log = Throttled(logger, REFUSAL_LINES_PER_S, "refusals")

    def start(self) -> None:
        self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self.sweep)

    def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()

    def sweep(self) -> None:
        self.log.flush()
        now = time.monotonic()
        grace = self.limits.body_grace_s
        for connection in list(self.connections):
            if connection.unread.stalled(now, connection.transport) > grace:
                # Dropped with what it holds to send: a close would wait for that to leave.
                connection.transport.abort()
                message = f"the client read nothing of its answer for {grace:g} s"
                self.refused("slow_request", connection.client, message)
            else:
                connection.check_deadline(now, self.limits)
        self.start()

    async def shut(self, error: ServiceError) -> None:
        """After SIGTERM's drain, refuse the requests still arriving with ``error`` and give
        their clients up to LINGER_S to read it before the process exits."""
        for connection in list(self.connections):
            connection.cut_short(error)
        deadline = time.monotonic() + LINGER_S
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(SHUT_POLL_S)

    def lost(self, connection: Guarded) -> None:
        self.connections.discard(connection)
        self.making_room.discard(connection)

    def turned_away(self, transport: asyncio.Transport, open_connections: int) -> bool:
        """Whether a new connection is over the cap and so refused: 503 and Retry-After."""
        limit = self.limits.max_connections
        if open_connections - len(self.making_room) < limit or self.made_room():
            return False
        message = f"too many open connections (the limit is {limit})"
        transport.write(refusal(Overloaded(message + "; retry later", self.limits.retry_after_s)))
        linger(transport)
        self.refused("connection_limit", transport.get_extra_info("peername"), message)
        return True

    def made_room(self) -> bool:
        """Close up to ROOM of the connections longest waiting for a request (at least
        ROOM_AGE_S); whether any."""
        oldest = time.monotonic() - ROOM_AGE_S
        waiting = [c for c in self.connections if c.since < oldest and c.waiting_for_request()]
        if not waiting:
            return False
        limit = self.limits.max_connections
        error = Overloaded(
            f"closed to make room: too many open connections (the limit is {limit}) and this "
            "one had no request in hand; retry",
            self.limits.retry_after_s,
        )
        closed = heapq.nsmallest(ROOM, waiting, key=lambda connection: connection.since)
        for connection in closed:
            connection.give_way(error)
        self.making_room.update(closed)
        self.metrics.rejected.labels("connection_limit").inc(len(closed))
        token = request_id.set(None)
        self.log.warning(
            "connection_limit",
            "closed %d connections waiting for a request: the limit of %d open connections "
            "was reached",
            len(closed),
            limit,
        )
        request_id.reset(token)
        return True

    def refused(self, reason: str, client: Any, detail: str) -> None:
        self.metrics.rejected.labels(reason).inc()
        # The connection's, no request's: a refusal behind pipelined requests is written from
        # the last one's task, whose request id it must not carry.
        token = request_id.set(None)
        self.log.warning(reason, "refused %s: %s", client[0] if client else "a client", detail)
        request_id.reset(token)


def overdue(connection: Guarded, now: float, limits: ConnectionLimits) -> str | None:
    """Whether ``connection`` is past the deadline of what it waits for: None while it is not,
    "" when it is to be closed without an answer (idle, or opened and never used), else why
    it is refused as too slow."""
    elapsed = now - connection.since
    if connection.phase == IDLE:
        return "" if elapsed > limits.keep_alive_s else None
    if connection.phase == HEAD:
        if elapsed <= limits.head_timeout_s:
            return None
        if not connection.spoke:  # opened and never used: nothing to answer
            return ""
        return f"the request head did not arrive within {limits.head_timeout_s:g} s"
    if connection.phase == BODY:
        return _body_too_slow(connection, elapsed, now - connection.body_at, limits)
    return None


def _body_too_slow(
    connection: Guarded, elapsed: float, stopped: float, limits: ConnectionLimits
) -> str | None:
    """Why a request body is too slow (None while it is not): it has not moved for the grace
    period (a client that sent most of a large body and then nothing would otherwise hold its
    buffer for as long as its average allows), or its bytes in ``elapsed`` seconds since the
    head are under the minimum rate once the grace period is over."""
    received = connection.body_bytes
    if stopped > limits.body_grace_s:
        return f"no more of the request body arrived for {limits.body_grace_s:g} s"
    if elapsed > limits.body_grace_s and received < limits.min_body_rate * elapsed:
        return (
            f"the request body arrived at {received / elapsed:.0f} bytes/s, under the minimum "
            f"of {limits.min_body_rate:g} bytes/s"
        )
    return None


def framing_over(framing: int, chunks: int, limits: ConnectionLimits) -> PayloadTooLarge | None:
    """The refusal of a chunked body whose ``framing`` bytes over ``chunks`` chunks are too
    many (None while they are not): each chunk may take CHUNK_FRAMING bytes for its size
    line, its extensions and trailer fields together up to the head's cap. A chunk extension
    that never ends would otherwise be parsed for as long as it keeps coming (llhttp drops it
    unbuffered, so only the time is spent: gigabytes in the body's grace period). Counted in
    each read after the one that ends the head: that one's share goes uncounted (at most one
    read, 256 KiB)."""
    if framing <= limits.max_head_bytes + CHUNK_FRAMING * chunks:
        return None
    return PayloadTooLarge(
        f"the chunked body's extensions and trailer fields are over the limit of "
        f"{limits.max_head_bytes} bytes"
    )


def cut(cycle: Any, error: ServiceError, body_bytes: int) -> None:
    """The app's ``receive()`` sees the client gone; unless the app's answer has begun, the
    refusal (of ``body_bytes``) is answered in its place, and the request recorded with its
    status and size, not as one the client left (499)."""
    if not cycle.response_started:
        cycle.scope[REFUSED] = error.status_code
        cycle.scope[REFUSED_BYTES] = body_bytes
    cycle.disconnected = True
    cycle.message_event.set()


def refusal_body(error: ServiceError, path: str = "") -> bytes:
    """The JSON body of ``refusal``."""
    return orjson.dumps(error_body(path, error.code, error.message))


def refusal(error: ServiceError, path: str = "", body: bytes | None = None) -> bytes:
    """The whole answer to ``error`` that closes the connection, for a request to ``path``
    (as far as it was read), around ``body`` when it is made already."""
    if body is None:
        body = refusal_body(error, path)
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
    try:
        if transport.can_write_eof():
            transport.write_eof()
    except OSError:  # the client is gone already
        transport.close()
        return
    asyncio.get_running_loop().call_later(LINGER_S, transport.close)
