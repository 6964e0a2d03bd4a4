"""Errors a client can act on: an HTTP status, a stable snake_case code and a message.

Plain Python with no web imports: the worker processes raise them too, and they cross the
worker wire as (code, message) to be raised again as the same class (``error_for``). The HTTP
layer renders them (service/http/errors.py); docs/design.md section 2 lists the codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

QUOTED_CHARS = 80  # of a client's value quoted in an error message


class ServiceError(Exception):
    """Base of every error the service answers on purpose; subclasses fix status and code."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        # Fields of the answer beside "error": what the model saw and why, for an image
        # refused after the model ran on it (its explanation, its normalised input).
        self.details: dict[str, Any] = {}

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InternalError(ServiceError):
    """A bug, never the client's fault: the answer says no more than that."""

    status_code, code = 500, "internal_error"


class BadRequest(ServiceError):
    status_code, code = 400, "bad_request"


class InvalidImage(ServiceError):
    status_code, code = 400, "invalid_image"


class PayloadTooLarge(ServiceError):
    status_code, code = 413, "payload_too_large"

    @classmethod
    def body(cls, limit: int, declared: int | None = None) -> PayloadTooLarge:
        """A request body over ``limit`` bytes: from its Content-Length (``declared``), before
        any of it is read, or counted as it arrived."""
        size = "" if declared is None else f" of {declared} bytes"
        return cls(f"request body{size} is over the limit of {limit} bytes")


class ImageTooLarge(ServiceError):
    status_code, code = 413, "image_too_large"


class UnsupportedMediaType(ServiceError):
    status_code, code = 415, "unsupported_media_type"


class ValidationFailed(ServiceError):
    status_code, code = 422, "validation_error"


class NoInk(ServiceError):
    status_code, code = 422, "no_ink"


class UnknownRequest(ServiceError):
    """A correction names an answer this service does not remember (never given, or older
    than the feedback window)."""

    status_code, code = 404, "unknown_request"


class FeedbackDisabled(ServiceError):
    status_code, code = 404, "feedback_disabled"


class AlreadyCorrected(ServiceError):
    status_code, code = 409, "already_corrected"


class AmbiguousRequest(ServiceError):
    """A correction names a request id that answered more than one request in the feedback
    window (a client reusing X-Request-ID): recording it against either could be wrong."""

    status_code, code = 409, "ambiguous_request"


class NothingToCorrect(ServiceError):
    """A correction names an answer that kept no 28x28 image (an error given before the model
    read one: no_ink, invalid_image): there is nothing to store with the label."""

    status_code, code = 409, "nothing_to_correct"


class FeedbackFull(ServiceError):
    """The corrections folder holds as many records as it may (DIGITS_FEEDBACK_MAX_RECORDS)."""

    status_code, code = 507, "feedback_full"


class NotADigit(ServiceError):
    """The image holds ink, but not a digit: its score is below the model's threshold, or its
    shape is one no digit has. The message names the best guess and why it was refused."""

    status_code, code = 422, "not_a_digit"


class Overloaded(ServiceError):
    """The bounded inference queue is full: refuse at once rather than queue without bound."""

    status_code, code = 503, "overloaded"

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message, {"Retry-After": str(retry_after_seconds)})


class NotReady(ServiceError):
    status_code, code = 503, "not_ready"


class ShuttingDown(NotReady):
    """SIGTERM's drain (DIGITS_GRACEFUL_SHUTDOWN_SECONDS) ended before this request's answer."""

    def __init__(self) -> None:
        super().__init__("the server is shutting down and stopped before answering; retry")


class RequestTimeout(ServiceError):
    """The request's head or body arrived too slowly; the connection is closed."""

    status_code, code = 408, "request_timeout"


class HeadersTooLarge(ServiceError):
    """The request's head is over the cap; the connection is closed."""

    status_code, code = 431, "headers_too_large"


# Every concrete error by its code: what a worker's error reply is raised as in the server.
_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        InternalError,
        BadRequest,
        InvalidImage,
        PayloadTooLarge,
        ImageTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        NoInk,
        UnknownRequest,
        FeedbackDisabled,
        AlreadyCorrected,
        AmbiguousRequest,
        NothingToCorrect,
        FeedbackFull,
        NotADigit,
        Overloaded,
        NotReady,
        RequestTimeout,
        HeadersTooLarge,
    )
}


def error_for(code: str, message: str) -> ServiceError:
    """The error of class ``code`` carrying ``message``; an unknown code is a bug (500)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return InternalError(f"unknown error code {code!r}: {message}")
    if cls is Overloaded:
        return Overloaded(message)
    return cls(message)


def quoted(value: object) -> str:
    """A client's value as an error message shows it: quoted, escaped onto one line, and
    short however long it was, so that echoing a 60 KB header or path does not make the
    answer the largest thing the request produced. A string keeps JSON's escapes inside
    single quotes, its own quotes told apart from those round it: the name it shows is the
    name the client sent."""
    text = json.dumps(value, default=str)
    if isinstance(value, str):
        text = "'" + text[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
    else:
        text = text.replace('"', "'")
    return shortened(text)


def shortened(text: str) -> str:
    """``text`` cut to QUOTED_CHARS, marked "...", when longer: a client's path echoed in an
    answer or an access line stays short however long the client made it."""
    return text if len(text) <= QUOTED_CHARS else f"{text[: QUOTED_CHARS - 3]}..."
