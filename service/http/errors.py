"""Every error as ``{"error": {"code": ..., "message": ...}}`` (docs/design.md section 2):
the service's own ``ServiceError``s and FastAPI's 404, 405 and 422 alike."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from service.errors import InternalError, ServiceError, ValidationFailed, shortened
from service.http.observability import CLIENT_CLOSED, METHODS
from service.http.v2.errors import error_body, not_served

logger = logging.getLogger("service.errors")

_STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


def error_response(
    status_code: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    path: str = "",
) -> JSONResponse:
    """The error answer to a request for ``path`` (V2's shape on /v2 paths)."""
    return JSONResponse(
        error_body(path, code, message),
        status_code=status_code,
        headers=dict(headers) if headers else None,
    )


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    path = request.url.path
    return error_response(exc.status_code, exc.code, exc.message, exc.headers, path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, path = _STATUS_CODES.get(exc.status_code, "error"), request.url.path
    if exc.status_code == 404:
        message = f"no route {shortened(path)}{not_served(path)}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {shortened(path)}"
        headers = {**(exc.headers or {}), **_allow(request)}
        return error_response(405, code, message, headers, path)
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, exc.headers, path)


def _allow(request: Request) -> dict[str, str]:
    """The Allow header of a 405: every method some route on the path takes. Starlette names
    only the first route that matched the path, so a path with a GET and a POST route (such
    as /feedback) told a client that only GET exists. Asked of the routes themselves, one
    method at a time: the only public way through FastAPI's included routers. HEAD goes
    wherever GET does (service/http/middleware.py, HeadAsGet)."""
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": "GET" if method == "HEAD" else method})[0]
            is Match.FULL
            for route in request.app.router.routes
        )
    ]
    return {"Allow": ", ".join(allowed)} if allowed else {}


def _describe(error: Mapping[str, Any], within: tuple[str, ...]) -> str:
    where = ".".join(str(part) for part in (*within, *error.get("loc", ())))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))


def validation_message(errors: Sequence[Mapping[str, Any]], within: tuple[str, ...] = ()) -> str:
    """pydantic's errors as one line, each as ``where: what`` (``within`` prefixes every
    location, as FastAPI's own ``body.``), for a 422 ``validation_error``."""
    return "; ".join(_describe(error, within) for error in errors) or "invalid request"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = validation_message(exc.errors())
    failed = ValidationFailed
    return error_response(failed.status_code, failed.code, message, path=request.url.path)


async def _client_gone(_: Request, exc: Exception) -> Response:
    # The client closed the connection (or was cut for a trickling body) while its body was
    # read: nobody gets this answer; its status only tells the metrics and the access line
    # what happened, as the direct routes' 499 does. Not an error of ours, so not a 500.
    assert isinstance(exc, ClientDisconnect)
    return Response(status_code=CLIENT_CLOSED)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # A bug, never the client's fault: log it with the traceback, answer in the same shape.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    error = InternalError
    return error_response(
        error.status_code, error.code, "internal server error", path=request.url.path
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, FastAPI's own 404/405/422 included, use the one JSON body."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected_error)
