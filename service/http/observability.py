"""What every request leaves behind: its id, its request metrics and one access-log line.

Shared by the ASGI middleware (every FastAPI route) and the prediction routes' direct
handlers (service/http/fast_routes.py), so both record requests the same way.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import Scope

from service.errors import shortened
from service.http.guard import REFUSED, REFUSED_BYTES
from service.http.schemas import REQUEST_ID_PATTERN
from service.logs import AccessLog
from service.metrics import Metrics

_SANE_ID = re.compile(REQUEST_ID_PATTERN)
UNMATCHED = "<unmatched>"
CLIENT_CLOSED = 499  # the client went away before its answer: no answer is sent
# Health and scrape traffic would drown the request metrics and tell nothing about clients;
# KServe's probes are V2's health routes (deploy/kserve/inferenceservice.yaml).
UNMEASURED = frozenset({"/metrics", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
# Any other method a client invents is counted as "other": label values stay bounded.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Recorder:
    """Request ids, request metrics and access lines; label children are looked up once per
    label set."""

    def __init__(
        self,
        metrics: Metrics,
        access_log: AccessLog | None,
        trace_id: Callable[[], str | None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.access_log = access_log if access_log is not None and access_log.enabled else None
        self.trace_id = trace_id  # with tracing on: the current request's, for its access line
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # A new id is this process's random prefix and a count: unique without the cost of
        # a UUID per request.
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count()

    def request_id(self, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The client's X-Request-ID when it is sane, else a new one."""
        for name, value in headers:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SANE_ID.match(candidate):
                    return candidate
                break
        return f"{self._prefix}{next(self._count):016x}"

    def begin(self, path: str, since: float | None = None) -> float:
        """The request's start (now unless ``since``); counts it in flight unless its path is
        unmeasured."""
        if path not in UNMEASURED:
            self.metrics.in_flight.inc()
        return time.perf_counter() if since is None else since

    def end(
        self,
        scope: Scope,
        route: str,
        status: int,
        started: float,
        sent: int,
        request_id: str,
    ) -> None:
        elapsed = time.perf_counter() - started
        method, path = scope["method"], scope["path"]
        if REFUSED in scope:  # cut by the connection: the client got its refusal instead
            status, sent = scope[REFUSED], scope.get(REFUSED_BYTES, 0)
        if status == CLIENT_CLOSED:  # whatever the route wrote went nowhere
            sent = 0
        if path not in UNMEASURED:
            self.metrics.in_flight.dec()
            counter, histogram = self._children_of(route, method, status)
            counter.inc()
            histogram.observe(elapsed)
        if self.access_log is not None:
            client = scope.get("client")
            shown = shortened(path)  # a client's 30 KB path is not a 30 KB log line
            fields = {
                "method": method,
                "path": shown,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "bytes_sent": sent,
                "client": client[0] if client else "",
            }
            if self.trace_id is not None:
                fields["trace_id"] = self.trace_id()
            self.access_log.write(f"{method} {shown} {status}", request_id, fields)

    def _children_of(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (route, method if method in METHODS else "other", str(status))
            children = (
                self.metrics.requests.labels(*labels),
                self.metrics.request_duration.labels(*labels),
            )
            self._children[key] = children
        return children
