"""OpenTelemetry traces of requests (front-end process), off unless the standard
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT names a receiver.

Off, nothing of OpenTelemetry is imported and the request path is what it was. On: a span per
request (requests.py) with the worker's spans under it, made here from the timings the worker
reports with its answers (frames.py): the workers export nothing themselves. OTLP over
HTTP/protobuf; the other OTEL_* variables (headers, timeout, compression, sampler, resource
attributes, batch processor) are the OpenTelemetry SDK's own and read by it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.tracing.exporter import Tracing

logger = logging.getLogger("service.tracing")

TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_PATH = "/v1/traces"


def traces_endpoint(environ: Mapping[str, str] = os.environ) -> str | None:
    """The OTLP/HTTP URL traces go to, by the specification's rules, or None (tracing off;
    also when OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if environ.get(TRACES_ENDPOINT, "").strip():
        return environ[TRACES_ENDPOINT].strip()  # a signal's own endpoint is used as it is
    base = environ.get(ENDPOINT, "").strip()
    return base.rstrip("/") + TRACES_PATH if base else None


def start_tracing(environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """Tracing as the environment asks for it, or None (and no OpenTelemetry import)."""
    endpoint = traces_endpoint(environ)
    if endpoint is None:
        return None
    from service.tracing.exporter import Tracing

    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip() != "http/protobuf":
        logger.warning("OTLP protocol %r is not supported; sending http/protobuf", protocol)
    logger.info("tracing on: spans go to %s (OTLP/HTTP)", endpoint)
    return Tracing.start(endpoint)
