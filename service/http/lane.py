"""The prediction routes answered from the HTTP protocol itself, without uvicorn's ASGI cycle.

Why: on the direct routes, what uvicorn does around the app cost the event loop more per
request than the handler's own Python: a scope with a copy of the lifespan state, a
RequestResponseCycle with its asyncio.Event, the proxy-headers middleware, the app's
dispatch, and a ``send`` that checks every response header against two regular expressions
(docs/performance.md, "The direct lane"). On the lane the protocol collects the body and
runs the same ``FastRoutes.serve`` with a plain ``receive`` and ``send``: the same handler,
request id, metrics, access line and errors, so an answer is the ASGI path's, byte for byte.

A request takes the lane only when nothing about it needs the ASGI path: a POST to a direct
route, a declared Content-Length within the body limit (a chunked or oversized body goes the
ASGI path, which streams and cuts it), no ``Expect: 100-continue``, no proxy headers to
honour, no earlier request on its connection still being answered, and tracing off (the
lifespan then offers no lane).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
from starlette.types import Message
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from service.http.coalescing import HeldHead
from service.http.fast_routes import CLOSE, FastRoutes, Handler, declared_length

logger = logging.getLogger("service.errors")

LANE = "direct_lane"  # the lifespan state key the protocol finds the lane under
# Headers that ask for what only the ASGI path does: 100 Continue, the client's address
# from a proxy (uvicorn's ProxyHeadersMiddleware), a streamed body.
_ASGI_ONLY = frozenset(
    {b"expect", b"transfer-encoding", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded"}
)


@dataclass(slots=True, eq=False)
class Exchange:
    """One request on the lane, kept where uvicorn's protocol keeps its cycle: the
    protocol's own callbacks (a disconnect, a shutdown, a pipelined request, a refusal) read
    and set these fields as they would the cycle's."""

    scope: dict[str, Any]
    handler: Handler
    keep_alive: bool
    arrived: float  # perf_counter when its head was read: its duration counts from there
    routes: FastRoutes
    chunks: list[bytes] = field(default_factory=list)
    # Its body came whole and its route answers it, or it ended before and is recorded so.
    settled: bool = False
    response_started: bool = False
    response_complete: bool = False
    disconnected: bool = False

    @property
    def message_event(self) -> Exchange:
        """uvicorn's protocol sets its cycle's event when a disconnect or a refusal (guard.py's
        ``cut``) reaches the request. Nothing on the lane waits on it: the route starts once
        the body is whole. A request that ends before is recorded then, as the ASGI path
        records it (499, or the refusal's status)."""
        return self

    def set(self) -> None:
        if self.disconnected and not self.settled:
            self.settled = True
            self.routes.record_unanswered(self.scope, self.arrived)


class DirectLane:
    """Which requests may skip the ASGI cycle, and how each of them is answered."""

    def __init__(self, routes: FastRoutes) -> None:
        self.routes = routes

    def exchange(
        self,
        parser: httptools.HttpRequestParser,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
    ) -> Exchange | None:
        """The exchange of the request whose head ``parser`` has just read, when it may take
        the lane; else None (the ASGI path)."""
        if parser.get_method() != b"POST" or parser.should_upgrade():
            return None
        parsed = httptools.parse_url(url)
        raw_path: bytes = parsed.path
        if b"%" in raw_path:  # escapes: uvicorn's unquoting, on the ASGI path
            return None
        scope = {
            "type": "http",
            "method": "POST",
            "path": raw_path.decode("ascii"),
            "query_string": parsed.query or b"",
            "headers": headers,
            "client": client,
        }
        handler = self.routes.match(scope)
        if handler is None:
            return None
        length = -1
        for name, value in headers:
            if name == b"content-length":
                length = declared_length(value)
            elif name in _ASGI_ONLY:
                return None
        if not 0 <= length <= self.routes.max_body_bytes:
            return None
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return Exchange(scope, handler, keep_alive, time.perf_counter(), self.routes)

    async def serve(
        self,
        exchange: Exchange,
        writer: HeldHead,
        flow: FlowControl,
        default_headers: list[tuple[bytes, bytes]],
        on_complete: Callable[[], None],
    ) -> None:
        """Answer a whole request through ``FastRoutes.serve``; the response (after
        uvicorn's ``default_headers``: its Date) leaves in one write through the connection's
        ``writer``, or nothing when the client has gone or the connection was refused
        meanwhile; then the connection is closed or ``on_complete`` readies it for the next
        request."""
        chunks = exchange.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        exchange.chunks = []
        status, headers = 0, []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], default_headers + message["headers"]
                exchange.response_started = True
                if CLOSE in headers:
                    exchange.keep_alive = False
                return
            if exchange.disconnected:
                return
            writer.write(_response(status, headers, message["body"], exchange.keep_alive))
            if flow.write_paused:  # a client that sends and does not read is not fed more
                await flow.drain()

        try:
            await self.routes.serve(
                exchange.scope, receive, send, exchange.handler, since=exchange.arrived
            )
        except Exception:  # FastRoutes.serve answers the handler's errors; this is a bug here
            logger.exception("answering %s on the direct lane failed", exchange.scope["path"])
            exchange.keep_alive = False
        exchange.response_complete = True
        if not exchange.keep_alive and not writer.is_closing():
            writer.close()  # lingering, as on the ASGI path: what still arrives is dropped
        on_complete()


def _response(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
) -> bytes:
    head = [STATUS_LINE[status]]
    head.extend(b"%s: %s\r\n" % header for header in headers)
    if not keep_alive and CLOSE not in headers:
        head.append(b"connection: close\r\n")
    head += (b"\r\n", body)
    return b"".join(head)
