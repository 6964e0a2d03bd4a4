"""Errors of the V2 protocol routes: a status code and the protocol's ``{"error": "..."}`` body.

The rest of the service answers ``{"error": {"code", "message"}}`` (docs/design.md); V2 clients
(tritonclient, perf_analyzer, KServe's SDK) read a plain string under ``error`` instead and fail
with a decode error on anything else, so V2 routes render their own errors.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.errors import quoted

V2_PREFIX = "/v2"


def is_v2_path(path: str) -> bool:
    """Whether ``path`` is one of the V2 protocol's (/v2 and below it)."""
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_body(path: str, code: str, message: str) -> dict[str, Any]:
    """The error body the client of ``path`` reads: the protocol's on /v2 paths (whichever
    layer refuses the request: a route, the body limit, the router's 404 and 405, the
    connection's 408 and 431), the service's everywhere else."""
    if is_v2_path(path):
        return {"error": message}
    return {"error": {"code": code, "message": message}}


# Triton's extensions this server does not serve, by their paths under /v2 (GET /v2 lists
# the ones it does): a client that calls one learns why it got a 404.
_NOT_SERVED = (
    ("/v2/systemsharedmemory", "system shared memory"),
    ("/v2/cudasharedmemory", "CUDA shared memory"),
    ("/v2/trace", "trace"),
    ("/v2/logging", "logging"),
)


def not_served(path: str) -> str:
    """For a 404 on ``path``: which Triton extension it belongs to, when this server lacks it."""
    parts = path.rstrip("/").split("/")
    if parts[1:3] == ["v2", "models"] and parts[-1] in ("generate", "generate_stream"):
        name = "generate"
    else:
        name = next((n for p, n in _NOT_SERVED if path == p or path.startswith(p + "/")), "")
    if not name:
        return ""
    return f"; Triton's {name} extension is not served here (GET /v2 lists the extensions served)"


class V2ErrorBody(BaseModel):
    """Every /v2 error answer, in the protocol's shape."""

    error: str = Field(description="What went wrong, naming the value.")


_MEANINGS = {
    400: "Malformed request: the message names the field or value",
    401: "No admin token (with WWW-Authenticate: Bearer)",
    403: "The admin token is not valid",
    404: "Unknown model or version; on /v2/repository, the extension is off",
    409: "Another model load is in progress: retry when it is done",
    413: "Body over DIGITS_MAX_BODY_BYTES, or a model file over its limit",
    415: "A Content-Encoding other than gzip, deflate or identity",
    503: "Model not loaded yet, the queue is full (with Retry-After), or the workers could not "
    "start a new model",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's error statuses, in the protocol's shape."""
    return {status: {"model": V2ErrorBody, "description": _MEANINGS[status]} for status in statuses}


class V2Error(Exception):
    """A request the V2 protocol refuses; the message names the bad value."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": self.message}, self.status_code, headers=headers)


def unknown_model(requested: str, served: str) -> V2Error:
    """The 404 for a model name other than the one model this server serves."""
    return V2Error(f"unknown model {quoted(requested)}; this server serves '{served}'", 404)
