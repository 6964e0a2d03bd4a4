"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a copy per request).

``BodyLimit`` refuses bodies over the limit from Content-Length up front and, for chunked
or lying clients, by counting ``receive()`` bytes. ``Observability`` gives every response an
``X-Request-ID``, records the request metrics and writes one JSON access-log line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge
from service.http.errors import error_response
from service.logs import request_id
from service.metrics import Metrics

access_logger = logging.getLogger("service.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMATCHED = "<unmatched>"
# Health and scrape traffic would drown the request metrics and tell nothing about clients.
UNMEASURED = frozenset({"/metrics", "/healthz", "/readyz"})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    message = f"request body of {declared} bytes is over the limit of {limit} bytes"
                    response = error_response(413, "payload_too_large", message)
                    response.headers["Connection"] = "close"
                    await response(scope, receive, send)
                    return
                break
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the app, so the route's error handler renders the 413.
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


class Observability:
    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _request_id(scope)
        token = request_id.set(rid)
        header = (b"x-request-id", rid.encode("latin-1"))
        status = 500  # if the app dies before answering, uvicorn sends a 500
        sent = 0
        measured = scope["path"] not in UNMEASURED
        if measured:
            self.metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            if measured:
                self.metrics.in_flight.dec()
                labels = (route, scope["method"], str(status))
                self.metrics.requests.labels(*labels).inc()
                self.metrics.request_duration.labels(*labels).observe(elapsed)
            if self.access_log:
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "bytes_sent": sent,
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
            request_id.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SANE_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
