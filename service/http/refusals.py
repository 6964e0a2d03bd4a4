"""Refusing a request on its connection: the JSON answer, the close, the count, the log line.

A refusal is the connection's, not a route's: bytes that are not HTTP, a head over the cap,
a body's framing over it, a deadline missed (the limits: service/http/guard.py). It is
written once per connection, after the answers to the whole requests before it, and the
connection then closes lingering. ``RefusingProtocol`` is that part of the server's protocol
(service/http/connections.py's ``GuardedProtocol``, which sets the state declared here).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import (
    BadRequest,
    HeadersTooLarge,
    RequestTimeout,
    ServiceError,
    ShuttingDown,
)
from service.http.body_budget import Holding
from service.http.coalescing import HeldHead
from service.http.guard import (
    BODY,
    HEAD,
    IDLE,
    ConnectionGuard,
    ConnectionLimits,
    cut,
    linger,
    overdue,
    refusal,
    refusal_body,
)
from service.http.unread import Unread, unsent


class RefusingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that refuses as above; the state is its subclass's."""

    guard: ConnectionGuard | None
    writer: HeldHead | None
    unread: Unread
    holding: Holding  # its requests' bodies, in the process's budget
    phase: str  # what the connection waits for (service/http/guard.py: HEAD, BODY, ...)
    since: float
    spoke: bool
    head_received: int  # bytes of the request head being read
    body_bytes: int
    body_at: float
    refused: bool
    deferred: tuple[str, ServiceError] | None  # a refusal waiting for answers before it

    @property
    def stopped(self) -> bool:
        """Refused, or to be once the answers before it are out: nothing more that arrives
        is read as a request (the rest of the read holding a refused head still goes through
        the parser, whose callbacks must then touch no earlier request)."""
        return self.refused or self.deferred is not None

    def _close_lingering(self) -> None:
        """Close after a refusal, or an answer that closes the connection (a 413 while the body
        is still coming): lingering, what still arrives read and dropped."""
        self.refused = True
        self.flow.resume_reading()  # uvicorn pauses a large body: unread, it would reset
        linger(self.transport)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, as every refusal here (JSON, not
        uvicorn's plain text; nothing more written on the connection, a lingering close),
        counted as bad_request: no route saw it, so no request metric does."""
        self._refuse_counted("bad_request", BadRequest(msg))

    def _refuse_head(self, guard: ConnectionGuard, trailers: str = "") -> None:
        limit = guard.limits.max_head_bytes
        message = f"the request head{trailers} is over the limit of {limit} bytes"
        self._refuse_counted("headers_too_large", HeadersTooLarge(message))

    def _refuse_counted(self, reason: str, error: ServiceError) -> None:
        if self._owed_before():  # whole requests before the bad one are answered first
            self.deferred = self.deferred or (reason, error)
            return
        if self._refuse(error) and self.guard is not None:
            self.guard.refused(reason, self.client, error.message)

    def _owed_before(self) -> bool:
        """Whether whole requests before the one refused still wait for their answers. Past
        its head the one refused is the latest cycle; queued behind them, it leaves the queue
        (it is not answered)."""
        if self.phase != HEAD:
            queued = [entry for entry in self.pipeline if entry[0] is self.cycle]
            for entry in queued:
                self.pipeline.remove(entry)
            return bool(queued)
        return self._answers_owed()

    def _answers_owed(self) -> bool:
        """Whether requests read on this connection still wait for (part of) their answer."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _refuse(self, error: ServiceError) -> bool:
        """Answer ``error`` (JSON) and close, whatever the request was doing; once (a head
        over the cap is seen both when parsed and when counted raw, in one read). Whether
        this call refused the connection."""
        if self.refused:
            return False
        self.refused = True
        self.holding.release()  # what still arrives is dropped, and nothing is answered
        if self.writer is not None:  # answers still in flight (pipelined too) write no more
            self.writer.shut_down()
        path = self.url.partition(b"?")[0].decode("latin-1")  # the request's, as far as it came
        body = refusal_body(error, path)
        if self.cycle is not None and not self.cycle.response_complete:
            cut(self.cycle, error, len(body))
            if self.cycle.response_started:  # too late for our answer: just close
                self.transport.close()
                return True
        elif self.phase == BODY:  # answered before its body came: no second status line
            self._close_lingering()
            return True
        self.transport.write(refusal(error, path, body))
        self._close_lingering()
        return True

    def waiting_for_request(self) -> bool:
        """Whether closing this connection drops no request the server has taken: it is idle
        between requests or its head is not yet whole, it owes no answer, and all it was
        sent has reached its client (a close would cut an answer still leaving)."""
        return (
            self.phase in (IDLE, HEAD)
            and not self.stopped
            and not self.transport.is_closing()
            and not self._answers_owed()
            and not unsent(self.transport)
        )

    def give_way(self, error: ServiceError) -> None:
        """Close to make room for a new connection: silently when no request has begun (as
        an idle connection is closed), else answering ``error``. Not lingering: the client
        has sent nothing unread, and the slot is wanted now."""
        self.refused = True
        if self.phase == HEAD and self.head_received:
            path = self.url.partition(b"?")[0].decode("latin-1")
            self.transport.write(refusal(error, path))
        self.transport.close()

    def shutdown(self) -> None:
        """uvicorn's start of SIGTERM's drain closes a connection with no request under way,
        one whose head is half sent included: that client is told why instead (503), as
        one whose request is still arriving when the drain ends is."""
        if self.phase == HEAD and self.head_received and not self._answers_owed():
            self._refuse(ShuttingDown())
            return
        super().shutdown()

    def cut_short(self, error: ServiceError) -> None:
        """At the end of SIGTERM's drain: a request whose head or body is still arriving is
        refused with ``error`` (on the direct lane it has no task for uvicorn to cancel, so
        the exit would drop it unanswered); a connection waiting for a request is closed."""
        if self.stopped or self.transport.is_closing():
            return
        if self.phase == BODY or (self.phase == HEAD and self.head_received):
            if not self._owed_before():  # else the answers before it are still being cut
                self._refuse(error)
        elif not self._answers_owed():
            self.transport.close()

    def check_deadline(self, now: float, limits: ConnectionLimits) -> None:
        """Close this connection if it is past the deadline of what it is waiting for."""
        if self.refused or self.transport.is_closing():
            return
        message = overdue(self, now, limits)
        if message == "":
            self.transport.close()
        elif message:
            self._refuse_counted("slow_request", RequestTimeout(message))
