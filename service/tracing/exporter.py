"""The tracer provider of one front-end process: batched OTLP/HTTP export, the standard
resource (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from service import __version__
from service.tracing.frames import WorkerSpans
from service.tracing.requests import RequestTracing

DEFAULT_SERVICE_NAME = "digits"
SCOPE = "digits.service"


@dataclass
class Tracing:
    """What the app wires in: the request spans, the worker spans, the log lines' trace id."""

    provider: TracerProvider
    requests: RequestTracing
    frames: WorkerSpans

    @classmethod
    def start(cls, endpoint: str) -> Tracing:
        resource = Resource.create({SERVICE_VERSION: __version__})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        # Not the global provider: each app (tests hold several in one process) has its own.
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        tracer = provider.get_tracer(SCOPE, __version__)
        return cls(provider, RequestTracing(tracer), WorkerSpans(tracer))

    @staticmethod
    def trace_id() -> str | None:
        """The current request's trace id (32 hex digits), for its access line."""
        context = trace.get_current_span().get_span_context()
        return f"{context.trace_id:032x}" if context.is_valid else None

    def shutdown(self) -> None:
        """Send what is left; the app is stopping."""
        self.provider.shutdown()
