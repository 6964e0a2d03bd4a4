"""The HTTP connections themselves: the limits uvicorn lacks, and fewer steps per response.

uvicorn on httptools caps neither the request head's size nor the time a client takes to
send its head or body, or to read its answer, keeps any number of connections open, and arms
a keep-alive timer per response. ``GuardedProtocol`` is uvicorn's httptools protocol plus the
limits service/http/guard.py lists (each has its test in
tests/integration/test_hostile_clients.py), and a client that shuts its sending side after a
whole request still gets the answer (uvicorn drops it), then the connection closes. How it
refuses a request is service/http/refusals.py's. It also answers the prediction routes itself
when a request allows (the direct lane, service/http/lane.py), and holds back an ASGI
response's head until its first body bytes (service/http/coalescing.py): a small answer
leaves in one send.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httptools

from service.errors import Overloaded, ServiceError
from service.http.body_budget import BodyBudget, Holding
from service.http.coalescing import HeldHead
from service.http.guard import APP, BODY, GUARD, HEAD, IDLE, REFUSED, ConnectionGuard, framing_over
from service.http.lane import LANE, DirectLane, Exchange
from service.http.observability import CLIENT_CLOSED
from service.http.offers import head_problem, head_without_offer
from service.http.refusals import RefusingProtocol
from service.http.unread import Unread


class GuardedProtocol(RefusingProtocol):
    """uvicorn's httptools protocol with the guard's limits (when the app's lifespan put a
    ConnectionGuard in its state; without one it behaves as uvicorn's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard: ConnectionGuard | None = self.app_state.get(GUARD)
        self.lane: DirectLane | None = self.app_state.get(LANE)
        self.holding = Holding(self.guard.bodies if self.guard is not None else BodyBudget(None))
        self.phase, self.since = HEAD, 0.0
        self.head_received = 0  # raw bytes since the request's first byte, while in its head
        self.head_size = 0  # the parsed head, as its bytes: request line, header lines
        self.body_bytes = 0
        self.body_at = 0.0  # when the body last made progress (or began)
        self.messages = self.framing = self.chunks = 0  # requests begun; this body's framing
        self.spoke = False  # has the client sent anything at all
        self.refused = False
        self.deferred: tuple[str, ServiceError] | None = None  # a refusal awaiting answers
        self.half_closed = False  # the client shut its sending side after a whole request
        self.writer: HeldHead | None = None
        self.url = b""  # uvicorn sets it from a request's first byte; a refusal may come sooner
        self.unread = Unread()  # what the client has not read of its answers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        if guard is not None and guard.turned_away(transport, len(self.connections)):
            self.transport, self.refused = transport, True
            return
        super().connection_made(transport)
        self.writer = HeldHead(transport, self._close_lingering)
        self._enter(HEAD)
        if guard is not None:
            guard.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.holding.release()
        if self.guard is not None:
            self.guard.lost(self)
        abandoned = [self.pipeline.pop() for _ in range(len(self.pipeline))]
        super().connection_lost(exc)
        if abandoned:
            self._record_abandoned(abandoned)

    def _record_abandoned(self, queued: list[tuple[Any, Any]]) -> None:
        """Requests queued behind the one being answered when the client left never reached
        the app, so no metric or access line had them. Each now runs through the app in turn
        as a request whose client has gone: its route finds the disconnect as it reads the
        body (every POST route reads it first), and the middleware records it as 499."""

        async def run() -> None:
            for cycle, app in queued:
                cycle.disconnected = True
                cycle.scope[REFUSED] = CLIENT_CLOSED
                await cycle.run_asgi(app)

        task = self.loop.create_task(run())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio allows True
        """The client shut its sending side (`nc -N`, some proxies): the whole requests it sent
        are still answered, then the connection closes (uvicorn drops them); else it closes
        now. A request whose body is still coming will get no more of it."""
        partial = self.phase == BODY and not self.pipeline  # the request being read is all
        if self.refused or partial or not self._answers_owed():
            return None  # asyncio closes the transport
        self.half_closed = True
        return True

    def _enter(self, phase: str) -> None:
        self.phase, self.since = phase, time.monotonic()
        if phase == HEAD:
            self.head_received = self.head_size = 0

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        self.spoke = True
        if self.phase == IDLE:
            self._enter(HEAD)
        if self.phase == HEAD:
            self.head_received += len(data)
        in_body = (self.messages, self.body_bytes) if self.phase == BODY else None
        self._feed(data)
        guard = self.guard
        if guard is None:
            return
        # Still in the head after this chunk: every byte so far belongs to the head (this
        # catches a header line that never ends, which the parser would buffer).
        if self.phase == HEAD and self.head_received > guard.limits.max_head_bytes:
            self._refuse_head(guard)
        elif in_body and in_body[0] == self.messages:  # its last read too
            # What of a read within one body is not body is chunked framing: sizes,
            # extensions and trailer fields, which the parser reads and drops uncounted.
            self.framing += len(data) - (self.body_bytes - in_body[1])
            if error := framing_over(self.framing, self.chunks, guard.limits):
                self._refuse_counted("payload_too_large", error)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:
            self._serve_without_upgrade(data[upgrade.args[0] :])

    def _serve_without_upgrade(self, rest: bytes) -> None:
        """Answer a request offering to switch protocols as HTTP/1.1 (service/http/offers.py):
        httptools ended it at its head, so its body would be lost, then read as a request."""
        method = self.parser.get_method()
        if method == b"CONNECT":  # a tunnel, not a request this server answers
            self.send_400_response("CONNECT is not served here")
            return
        version = self.parser.get_http_version().encode()
        head = head_without_offer(method, self.url, version, self.headers)
        self.parser = httptools.HttpRequestParser(self)
        self._enter(HEAD)  # the head is counted once more, from nothing
        self._feed(head + rest)

    def on_message_begin(self) -> None:
        # A pipelined request starts while the one before it is in its body or being
        # answered: its head is counted and timed from here, not added to the one before
        # (one byte stands for its part of this read: begun, but not counted).
        if self.phase != HEAD:
            self._enter(HEAD)
            self.head_received = 1
        self.messages += 1
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.stopped:
            self.head_size += len(url)
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.stopped:
            self.head_size += len(name) + len(value) + 4
            if self.phase == HEAD:
                super().on_header(name, value)
            elif self.guard is not None and self.head_size > self.guard.limits.max_head_bytes:
                self._refuse_head(self.guard, " with its trailer fields")  # never kept

    def on_headers_complete(self) -> None:
        if self.stopped:
            return
        guard = self.guard
        # The rest of the request line (method, spaces, version) and the blank line after it.
        self.head_size += len(self.parser.get_method() + b"  HTTP/1.1\r\n\r\n")
        if guard is not None and self.head_size > guard.limits.max_head_bytes:
            self._refuse_head(guard)
            return
        if self.parser.should_upgrade():  # parsed again without the offer once this one stops
            return
        if problem := head_problem(self.headers, version := self.parser.get_http_version()):
            self.send_400_response(problem)
            return
        self.expect_100_continue &= version != "1.0"  # an HTTP/1.0 client waits for no 100
        self._enter(BODY)
        self.holding.begin()
        self.body_bytes, self.body_at = 0, self.since
        self.framing = self.chunks = 0
        lane, cycle = self.lane, self.cycle  # the direct lane (service/http/lane.py) takes it?
        if lane is not None and (cycle is None or cycle.response_complete):
            if exchange := lane.exchange(self.parser, self.url, self.headers, self.client):
                self.cycle = exchange  # type: ignore[assignment]
                return
        super().on_headers_complete()
        # A pipelined request waits for the one before it, which may be writing: only a
        # request that starts now gets its head held; one that waits for "100 Continue"
        # must get that before its answer.
        if self.writer is not None:
            self.cycle.transport = self.writer  # type: ignore[assignment]
            if not self.pipeline and not self.expect_100_continue:
                self.writer.armed = True

    def on_body(self, body: bytes) -> None:
        if self.stopped:
            return
        if not self.holding.take(len(body)):  # service/http/body_budget.py
            guard = self.guard
            assert guard is not None  # only a guard's budget refuses
            if not (self._room_made(guard) and self.holding.take(len(body))):
                error = Overloaded(self.holding.refusal(len(body)), guard.limits.retry_after_s)
                self._refuse_counted("bodies_in_flight", error)
                return
        self.body_bytes += len(body)
        self.body_at = time.monotonic()
        cycle = self.cycle
        if type(cycle) is Exchange:  # bounded by its Content-Length, within the body limit
            cycle.chunks.append(body)
            return
        super().on_body(body)

    def _room_made(self, guard: ConnectionGuard) -> bool:
        """Bodies stalled for a second cut (408) to make room for this one; whether any was."""
        cut = self.holding.make_room(guard.connections)
        for connection in cut:
            guard.refused("slow_request", connection.client, guard.bodies.stalled_message())
        return bool(cut)

    def on_chunk_header(self) -> None:
        self.chunks += 1

    def on_message_complete(self) -> None:
        if self.stopped or self.parser.should_upgrade():  # the offer's message ends at its head
            return
        self.holding.done()
        cycle = self.cycle
        if cycle.response_complete:  # answered before its body was in: the connection is free
            self._enter(IDLE)
            return
        self._enter(APP)
        if type(cycle) is Exchange:
            assert self.lane is not None and self.writer is not None
            cycle.settled = True
            answer = self.lane.serve(
                cycle,
                self.writer,
                self.flow,
                self.server_state.default_headers,
                self.on_response_complete,
            )
            task = self.loop.create_task(answer)
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
            return
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, without its keep-alive timer per response: the sweep closes idle
        connections."""
        self.holding.answered()
        self.server_state.total_requests += 1
        if self.writer is not None:
            self.writer.flush()
        if self.refused or self.transport.is_closing():
            return
        if self.deferred and not self.pipeline:  # the last answer before the refusal
            self._refuse_counted(*self.deferred)
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            if self.half_closed and cycle is self.cycle and self.phase == BODY:
                self.transport.close()  # its body will not come
                self._record_abandoned([(cycle, app)])
                return
            self._start_asgi_task(cycle, app)
        elif self.half_closed:  # nothing more can arrive
            self.transport.close()
        elif self.phase == BODY:  # answered before its body (a 404): the rest is read, dropped
            if self.expect_100_continue:  # unless the client waits for a 100 it will not get
                self._close_lingering()
        elif self.phase != HEAD:  # else the next request's head has begun, and is timed
            self._enter(IDLE)

    def resume_writing(self) -> None:
        self.unread.drained = True  # the client read enough of its answer for more to go
        super().resume_writing()
