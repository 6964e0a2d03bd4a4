"""Routes answered as plain ASGI handlers, before FastAPI's routing: /predict, /predict/batch.

Why: the event loop's time per request bounds the whole service, and FastAPI's routing,
middleware stack, request objects and response classes cost the loop several times what
these routes need (docs/performance.md). A direct handler does the same work by hand: the
request id, the body limit, the request metrics and the access line (service/http/
observability.py), errors in the one JSON shape. FastAPI still declares the routes, so
/docs and the OpenAPI document describe them (service/http/routes/predict.py), and a
request that reaches FastAPI's declaration is answered by the same handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.errors import (
    InternalError,
    PayloadTooLarge,
    ServiceError,
    ShuttingDown,
    UnsupportedMediaType,
    quoted,
)
from service.http.observability import CLIENT_CLOSED, Recorder
from service.logs import request_id

logger = logging.getLogger("service.errors")

_JSON = (b"content-type", b"application/json")
CLOSE = (b"connection", b"close")  # the header of an answer that ends its connection
COMPRESSED_IMAGES = " (PNG, JPEG and WebP are compressed already)"


def declared_length(value: bytes) -> int:
    """A Content-Length value as a number; -1 when it is not one (httptools refuses those
    before the app sees them, a test client need not)."""
    return int(value) if value.isdigit() else -1


class ClientDisconnected(Exception):
    """The client closed the connection while sending its body."""


@dataclass(slots=True)
class DirectRequest:
    """What a direct handler needs of its request; the body is read when asked for."""

    scope: Scope
    receive: Receive
    content_type: str
    content_length: int | None
    max_body_bytes: int
    content_encoding: str = ""
    request_id: str | None = None  # the X-Request-ID it is answered with

    async def body(self) -> bytes:
        """The whole body, refused with 413 once it passes the limit (chunked or lying)."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                raise PayloadTooLarge.body(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @property
    def query_string(self) -> bytes:
        query: bytes = self.scope["query_string"]
        return query


Handler = Callable[[DirectRequest], Awaitable[bytes]]


class FastRoutes:
    """The direct handlers by (method, path), and how each request through them is served."""

    def __init__(self, recorder: Recorder, max_body_bytes: int) -> None:
        self.recorder = recorder
        self.max_body_bytes = max_body_bytes
        self._routes: dict[tuple[str, str], Handler] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method, path)] = handler

    @property
    def paths(self) -> list[str]:
        """The paths answered here (each is its own route template)."""
        return [path for _, path in self._routes]

    def match(self, scope: Scope) -> Handler | None:
        return self._routes.get((scope["method"], scope["path"]))

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        handler: Handler,
        since: float | None = None,
    ) -> None:
        """Answer one request with ``handler``: id, metrics, access line, errors, response.
        ``since``: when the request arrived (perf_counter), if before this call."""
        rid = self.recorder.request_id(scope["headers"])
        started = self.recorder.begin(scope["path"], since)
        token = request_id.set(rid)
        status, sent = CLIENT_CLOSED, 0
        try:
            status, body, headers = await self.answer(self._request(scope, receive, rid), handler)
            if status != CLIENT_CLOSED:
                sent = await _respond(send, status, body, rid, headers)
        finally:
            self.recorder.end(scope, scope["path"], status, started, sent, rid)
            request_id.reset(token)

    def record_unanswered(self, scope: Scope, since: float) -> None:
        """Record a request that ended before its body was whole, where no route ran (the
        direct lane hands a route whole bodies only): as ``serve`` would, 499 unless the
        connection refused it (service/http/observability.py reads the refusal's status)."""
        rid = self.recorder.request_id(scope["headers"])
        started = self.recorder.begin(scope["path"], since)
        self.recorder.end(scope, scope["path"], CLIENT_CLOSED, started, 0, rid)

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` as a FastAPI endpoint, for the route declarations /docs shows (the app
        answers these paths directly, before its routing; service/app.py)."""

        async def endpoint(request: Request) -> Response:
            # The request id middleware (service/http/middleware.py) set it for this request.
            direct = self._request(request.scope, request.receive, request_id.get())
            status, body, headers = await self.answer(direct, handler)
            response = Response(body, status, media_type="application/json")
            response.headers.update({k.decode(): v.decode() for k, v in headers})
            return response

        return endpoint

    def _request(self, scope: Scope, receive: Receive, rid: str | None) -> DirectRequest:
        content_type, length, encoding = "", None, ""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = declared_length(value)
            elif name == b"content-encoding":
                encoding = value.decode("latin-1")
        return DirectRequest(
            scope, receive, content_type, length, self.max_body_bytes, encoding, rid
        )

    async def answer(
        self, request: DirectRequest, handler: Handler
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """(status, JSON body, extra headers) for the request."""
        limit = request.max_body_bytes
        try:
            if request.content_length is not None and request.content_length > limit:
                raise PayloadTooLarge.body(limit, request.content_length)
            refuse_compressed(request.content_encoding, COMPRESSED_IMAGES)
            return 200, await handler(request), []
        except ClientDisconnected:
            return CLIENT_CLOSED, b"", []
        except asyncio.CancelledError:  # the drain after SIGTERM is over: uvicorn's 500 else
            stopped = ShuttingDown()
            return stopped.status_code, orjson.dumps({"error": stopped.to_dict()}), [CLOSE]
        except ServiceError as exc:
            headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            if isinstance(exc, PayloadTooLarge):
                headers.append(CLOSE)  # the rest of the body is not read
            return exc.status_code, orjson.dumps({"error": exc.to_dict(), **exc.details}), headers
        except Exception:  # a bug, never the client's fault: logged, answered in the same shape
            scope = request.scope
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            error = InternalError("internal server error")
            return 500, orjson.dumps({"error": error.to_dict()}), []


def refuse_compressed(encoding: str, advice: str = "") -> None:
    """Refuse a compressed body (415) on a route that does not inflate one: read as it is, it
    would only fail as "not an image" or "not UTF-8". ``advice`` ends the message."""
    if encoding and encoding.strip().lower() != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding {quoted(encoding)} is not accepted here: send the body "
            f"uncompressed{advice}"
        )


async def _respond(
    send: Send, status: int, body: bytes, rid: str, extra: list[tuple[bytes, bytes]]
) -> int:
    headers = [
        _JSON,
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode("latin-1")),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return len(body)
