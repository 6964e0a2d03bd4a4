"""A span per HTTP request, around the whole app (both kinds of routes).

An incoming W3C ``traceparent`` makes the request's span its child; the answer carries the
request's own ``traceparent`` header, so a client can find its trace. Health and scrape
requests are not traced (as they are not measured).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import Message, Receive, Scope, Send

from service.http.observability import UNMEASURED

App = Callable[[Scope, Receive, Send], Awaitable[None]]
_PROPAGATOR = TraceContextTextMapPropagator()
CLIENT_CLOSED = "client_closed"


class _Headers:
    """The propagator's view of an ASGI scope's raw headers."""

    def get(self, carrier: Iterable[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: Iterable[tuple[bytes, bytes]]) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_GETTER = _Headers()


def traceparent(span: trace.Span) -> bytes:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}".encode()


class RequestTracing:
    """Serves a request inside its span: ``await tracing(scope, receive, send, app)``."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: App) -> None:
        path, method = scope["path"], scope["method"]
        if path in UNMEASURED:
            await app(scope, receive, send)
            return
        parent = _PROPAGATOR.extract(scope["headers"], getter=_GETTER)  # type: ignore[arg-type]
        span = self._tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        token = context.attach(trace.set_span_in_context(span))
        header = (b"traceparent", traceparent(span))
        answer: dict[str, Any] = {"status": None, "code": None}

        async def traced_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                headers = list(message.get("headers", ()))
                answer["request_id"] = next(
                    (v.decode("latin-1") for k, v in headers if k.lower() == b"x-request-id"), None
                )
                message["headers"] = [*headers, header]
            elif answer["status"] and answer["status"] >= 400 and answer["code"] is None:
                answer["code"] = _error_code(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, traced_send)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            _finish(span, scope, answer)
            context.detach(token)


def _error_code(body: bytes) -> str:
    """The code of an error answer ({"error": {"code": ...}}), for the span's outcome."""
    try:
        error = orjson.loads(body).get("error")
        return str(error["code"]) if isinstance(error, dict) else "error"
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return "error"


def _finish(span: trace.Span, scope: Scope, answer: dict[str, Any]) -> None:
    route = getattr(scope.get("route"), "path", None)
    status = answer["status"]
    if isinstance(route, str):
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    if status is None:
        span.set_attribute("digits.outcome", CLIENT_CLOSED)
    else:
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("digits.outcome", "ok" if status < 400 else answer["code"] or "error")
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, answer["code"]))
    if answer.get("request_id"):
        span.set_attribute("digits.request_id", answer["request_id"])
    span.end()
