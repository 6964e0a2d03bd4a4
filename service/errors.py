"""Typed errors with their HTTP status, and the handlers that render every error as
``{"error": {"code": ..., "message": ...}}`` (docs/design.md section 2)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

logger = logging.getLogger("service.errors")


class ServiceError(Exception):
    """An error a client can act on: its status, a stable snake_case code and a message.

    ``ServiceError(status_code, code, message)`` works for one-off errors; the subclasses
    below fix status and code, so they take only the message.
    """

    def __init__(
        self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class _FixedError(ServiceError):
    status: int = 400
    error_code: str = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status, self.error_code, message, headers)


class BadRequest(_FixedError):
    status, error_code = 400, "bad_request"


class InvalidImage(_FixedError):
    status, error_code = 400, "invalid_image"


class PayloadTooLarge(_FixedError):
    status, error_code = 413, "payload_too_large"


class ImageTooLarge(_FixedError):
    status, error_code = 413, "image_too_large"


class UnsupportedMediaType(_FixedError):
    status, error_code = 415, "unsupported_media_type"


class ValidationFailed(_FixedError):
    status, error_code = 422, "validation_error"


class NoInk(_FixedError):
    status, error_code = 422, "no_ink"


class Overloaded(_FixedError):
    """The bounded inference queue is full: refuse at once rather than queue without bound."""

    status, error_code = 503, "overloaded"

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message, {"Retry-After": str(retry_after_seconds)})


class NotReady(_FixedError):
    status, error_code = 503, "not_ready"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "not_ready",
}


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status_code, headers=headers
    )


async def _service_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    if exc.status_code == 404:
        message = f"no route {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = "; ".join(_describe(error) for error in exc.errors()) or "invalid request"
    return error_response(422, "validation_error", message)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # A bug, never the client's fault: log it with the traceback, answer in the same shape.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, FastAPI's own 404/405/422 included, use the one JSON body."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
