"""Prometheus metrics (docs/design.md section 3) on a registry each app owns.

No global registry: two apps in one process (tests) never collide. One process per container,
so no multiprocess mode: the exposition of this process is the whole truth.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import (
    GCCollector as _GCCollector,
)
from prometheus_client import (
    PlatformCollector as _PlatformCollector,
)
from prometheus_client import (
    ProcessCollector as _ProcessCollector,
)

from service.contract import ModelInfo

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Request latency: sub-millisecond answers up to slow uploads.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# In-process steps are tens of microseconds to a few milliseconds.
STEP_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
DIGITS = tuple(str(digit) for digit in range(10))


class Metrics:
    """Every metric of the service, registered on ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        _ProcessCollector(registry=self.registry)
        _PlatformCollector(registry=self.registry)
        _GCCollector(registry=self.registry)
        http = ("route", "method", "status")
        self.requests = Counter(
            "digits_http_requests", "HTTP requests answered.", http, registry=self.registry
        )
        self.request_duration = Histogram(
            "digits_http_request_duration_seconds",
            "Time from the first byte of a request to its last response byte.",
            http,
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "digits_http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
        self.preprocess_duration = Histogram(
            "digits_preprocess_duration_seconds",
            "Decode and MNIST normalisation of one image.",
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "digits_inference_duration_seconds",
            "One ONNX Runtime call (a whole batch).",
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "digits_queue_wait_seconds",
            "Time an input waited for its model call, besides its own decoding.",
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "digits_batch_size",
            "Images per ONNX Runtime call.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "digits_rejected",
            "Inputs refused: overloaded (before inference), not_a_digit (after it).",
            ("reason",),
            registry=self.registry,
        )
        self.predictions = Counter(
            "digits_predictions", "Predictions by digit.", ("digit",), registry=self.registry
        )
        self.confidence = Histogram(
            "digits_prediction_confidence",
            "Top-class probability: a drift and bad-input signal.",
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "digits_model_info",
            "The model being served (always 1).",
            ("name", "version", "sha256", "provider"),
            registry=self.registry,
        )
        self.model_ready = Gauge(
            "digits_model_ready",
            "1 once the model is loaded and warmed up.",
            registry=self.registry,
        )
        # Children created up front: label lookups off the hot path, zero series visible at once.
        self._digit_counters = tuple(self.predictions.labels(digit) for digit in DIGITS)
        self.rejected.labels("overloaded")
        # Images answered not_a_digit: their share of all answers jumps when a client breaks
        # or a new kind of input arrives (deploy/prometheus/alerts.yml).
        self.rejected_not_a_digit = self.rejected.labels("not_a_digit")

    def set_model(self, info: ModelInfo) -> None:
        self.model_info.labels(info.name, info.version, info.sha256, info.provider).set(1)

    def observe_prediction(self, digit: int, confidence: float) -> None:
        self._digit_counters[digit].inc()
        self.confidence.observe(confidence)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
