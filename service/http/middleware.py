"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a copy per request).

``BodyLimit`` refuses bodies over the limit from Content-Length (when the route asks for the
body, before any of it is read) and, for chunked or lying clients, by counting ``receive()``
bytes. ``Observability`` gives every response an
``X-Request-ID``, records the request metrics and writes one JSON access-log line.
``HeadAsGet`` answers HEAD wherever GET is answered.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, ShuttingDown
from service.http.errors import error_response
from service.http.fast_routes import declared_length
from service.http.observability import UNMATCHED, Recorder
from service.logs import request_id


class HeadAsGet:
    """HEAD is answered as GET, the server sending the head alone (RFC 9110 section 9.3.2:
    every general-purpose server supports it; uptime checks and ``curl -I`` use it). FastAPI
    routes declared for GET would answer 405. Innermost: the access line and the metrics
    still say HEAD, and get the route the router found on the GET copy of the scope (they
    read it from the original: without it every HEAD was route "<unmatched>")."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send)
        finally:
            for key in ("route", "endpoint", "path_params"):  # what names the route (_route)
                if key in as_get:
                    scope[key] = as_get[key]


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, declared = self.max_body_bytes, -1
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = declared_length(value)
                break
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            if declared > limit:
                # Refused when its route reads it, before any of it is read: answered before
                # routing, a V2 infer's 413 was counted and logged as route "<unmatched>".
                # The connection closes: the client is still sending what nobody will read.
                raise PayloadTooLarge.body(limit, declared)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the app, so the route's error handler renders the 413.
                    raise PayloadTooLarge.body(limit)
            return message

        if declared <= limit:
            await self.app(scope, counting_receive, send)
            return

        async def closing_send(message: Message) -> None:
            # Whatever answers it (its route's 413, a 404 or 405 that never reads it), the
            # connection closes: the client is still sending what nobody will read.
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k != b"connection"]
                message["headers"] = [*headers, (b"connection", b"close")]
            await send(message)

        await self.app(scope, counting_receive, closing_send)


class Observability:
    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self.recorder.request_id(scope["headers"])
        started = self.recorder.begin(scope["path"])
        token = request_id.set(rid)
        header = (b"x-request-id", rid.encode("latin-1"))
        status = 500  # if the app dies before answering, uvicorn sends a 500
        sent = 0
        answering = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent, answering
            if message["type"] == "http.response.start":
                status, answering = message["status"], True
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:  # the drain after SIGTERM is over: uvicorn's 500 else
            if answering:
                raise
            error, path = ShuttingDown(), scope["path"]
            headers = {"Connection": "close"}
            response = error_response(error.status_code, error.code, error.message, headers, path)
            await response(scope, receive, send_with_id)
        finally:
            self.recorder.end(scope, _route(scope), status, started, sent, rid)
            request_id.reset(token)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # FastAPI's own /openapi.json is a plain Starlette route, which puts its endpoint in the
    # scope but not itself; it has no parameters, so its path is its template. (The app
    # mounts nothing, where a path without parameters could still be a file's.)
    if "endpoint" in scope and not scope.get("path_params"):
        return str(scope["path"])
    return UNMATCHED
