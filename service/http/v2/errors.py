"""Errors of the V2 protocol routes: a status code and the protocol's ``{"error": "..."}`` body.

The rest of the service answers ``{"error": {"code", "message"}}`` (docs/design.md); V2 clients
(tritonclient, perf_analyzer, KServe's SDK) read a plain string under ``error`` instead and fail
with a decode error on anything else, so V2 routes render their own errors.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse


class V2Error(Exception):
    """A request the V2 protocol refuses; the message names the bad value."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": self.message}, self.status_code, headers=headers)
