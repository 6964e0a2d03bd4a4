"""The response headers every answer carries, written into /openapi.json: a client generated
from the document (or a person reading it) learns of X-Request-ID, which names the answer in
the access log, a trace and a correction (POST /feedback), and of Retry-After on a full
queue's 503, which says when to try again. FastAPI documents bodies only."""

from __future__ import annotations

from typing import Any

from service.http.schemas import REQUEST_ID_PATTERN

REQUEST_ID: dict[str, Any] = {
    "description": "The request's id: the client's X-Request-ID when it matches the pattern, "
    "else a new one. It names the answer in the access log, a trace and POST /feedback.",
    "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
}
RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before trying again; sent with `overloaded` (the queue "
    "or the connections are full), not with `not_ready`.",
    "schema": {"type": "integer", "minimum": 0},
}


def document_headers(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with X-Request-ID on every response and Retry-After on every 503."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = REQUEST_ID
                if status == "503":
                    headers["Retry-After"] = RETRY_AFTER
    return spec
