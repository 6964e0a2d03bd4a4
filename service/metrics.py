"""Prometheus metrics (docs/design.md section 3) on a registry each app owns.

No global registry: two apps in one process (tests) never collide. With one front-end
process (the default) its exposition is the whole truth; with several (DIGITS_FRONT_ENDS),
prometheus_client's multiprocess mode adds up every front end's values in each scrape, and the
per-process collectors (process_*, python_*) are left out: they would describe whichever
front end answered the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import GCCollector as _GCCollector
from prometheus_client import PlatformCollector as _PlatformCollector
from prometheus_client import ProcessCollector as _ProcessCollector
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from service.contract import DEFAULT_LABELS, ModelInfo
from service.errors import NotADigit
from service.repository.statistics import InferenceStatistics
from service.workers.protocol import ImageResults, ShadowReport
from service.workers.results import TensorResults

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
# Why a worker process is replaced (service/workers/supervisor.py says which).
RESTART_REASONS = ("crashed", "killed", "hung", "failed_to_start")


class Metrics:
    """Every metric of the service, registered on ``self.registry``."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        """``multiprocess_dir``: the folder the front ends share their values in (set as
        PROMETHEUS_MULTIPROC_DIR before prometheus_client was imported), or None."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self._exposed = self.registry
        if multiprocess_dir is None:
            _ProcessCollector(registry=self.registry)
            _PlatformCollector(registry=self.registry)
            _GCCollector(registry=self.registry)
        else:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=multiprocess_dir)
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
            "digits_http_requests_in_flight",
            "HTTP requests being served.",
            registry=self.registry,
            multiprocess_mode="livesum",
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
            "Time an input waited for its model call, besides its own decoding (a V2 tensor's"
            " images: one wait).",
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
            "Inputs and connections refused: before inference (overloaded, bodies_in_flight,"
            " headers_too_large, slow_request, connection_limit, payload_too_large, bad_request,"
            " no_ink) or after it (not_a_digit).",
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
            "The model being served: 1; a model it replaced: 0 (several front ends).",
            ("name", "version", "sha256", "provider"),
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.model_ready = Gauge(
            "digits_model_ready",
            "1 once the model is loaded and warmed up (in every front end); 0 while no worker "
            "has had it open for 5 s.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.corrections = Counter(
            "digits_corrections",
            "Corrections received (POST /feedback): what was answered, what it really was.",
            ("predicted", "corrected"),
            registry=self.registry,
        )
        self.model_loads = Counter(
            "digits_model_loads",
            "Model loads (POST .../load, SIGHUP) by outcome: loaded, unchanged (the same "
            "file), refused (it failed a check), failed (workers could not start it), busy.",
            ("outcome",),
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "digits_worker_restarts",
            "Worker processes replaced, by why: crashed (on an image, which is refused), killed "
            "(from outside: the OOM killer, an operator), hung (past "
            "DIGITS_PREPROCESS_TIMEOUT_SECONDS), failed_to_start.",
            ("reason",),
            registry=self.registry,
        )
        for reason in RESTART_REASONS:  # from 0: rate() misses a series' first sample
            self.worker_restarts.labels(reason)
        self.shadow_agreement = Counter(
            "digits_shadow_agreement",
            "Inputs the shadow model saw, by whether its digit agreed with the served model's.",
            ("agree",),
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "digits_shadow_dropped",
            "Sampled inputs the shadow skipped because its worker had work waiting.",
            registry=self.registry,
        )
        self.shadow_confidence = Histogram(
            "digits_shadow_confidence",
            "The shadow model's top-class probability on the inputs it saw.",
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.shadow_duration = Histogram(
            "digits_shadow_inference_duration_seconds",
            "One shadow-model call (the sampled inputs of a batch, after their answers).",
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        # Triton's statistics extension (GET /v2/models/{name}/stats): not Prometheus, but
        # observed at the same places, from the same numbers the workers report.
        self.statistics = InferenceStatistics()
        # Children created up front: label lookups off the hot path, zero series visible at once.
        self._digit_counters = tuple(self.predictions.labels(digit) for digit in DEFAULT_LABELS)
        for reason in (
            "overloaded",
            "bodies_in_flight",
            "headers_too_large",
            "slow_request",
            "connection_limit",
            "payload_too_large",
            "bad_request",
        ):
            self.rejected.labels(reason)
        for outcome in ("loaded", "unchanged", "refused", "failed", "busy"):
            self.model_loads.labels(outcome)
        # Images answered not_a_digit: their share of all answers jumps when a client breaks
        # or a new kind of input arrives (deploy/prometheus/alerts.yml).
        self.rejected_not_a_digit = self.rejected.labels("not_a_digit")
        # Blank images (a client cropping or sending the wrong buffer): a batch answers them
        # 200 with per-image errors, in no request metric.
        self.rejected_no_ink = self.rejected.labels("no_ink")
        self._agreement = tuple(self.shadow_agreement.labels(agree) for agree in ("false", "true"))
        self._model_series: tuple[str, str, str, str] | None = None

    def expect_errors(self, routes: Iterable[str]) -> None:
        """The 5xx series of these POST routes, at 0 from the start: a series born at its first
        increment shows no rate until it moves again, so 503s that all fell between two
        scrapes (a burst past the queue) were invisible to the error-ratio alert and panels."""
        for route in routes:
            for status in ("500", "503"):
                self.requests.labels(route, "POST", status)

    def set_model(self, info: ModelInfo) -> None:
        """``info`` is the model served from now on (the only digits_model_info series at 1).

        With several front ends each keeps its series in its own file and a scrape shows the
        maximum over the live ones, so the replaced series is set to 0 (a removed child would
        keep its last value in the file) and shows 0 once every front end has swapped."""
        labels = (info.name, info.version, info.sha256, info.provider)
        old, self._model_series = self._model_series, labels
        if old is not None and old != labels:
            self.model_info.labels(*old).set(0)
            if self.multiprocess_dir is None:
                self.model_info.remove(*old)
        self.model_info.labels(*labels).set(1)
        self.statistics.of(info)  # listed by /stats from its first second, with zero counts

    def observe_shadow(self, report: ShadowReport) -> None:
        """What a worker's shadow model made of the inputs it sampled from one batch."""
        if report.dropped:
            self.shadow_dropped.inc(report.dropped)
        if not len(report.agree):
            return
        self.shadow_duration.observe(report.seconds)
        agreed = int(report.agree.sum())
        if agreed:
            self._agreement[1].inc(agreed)
        if agreed < len(report.agree):
            self._agreement[0].inc(len(report.agree) - agreed)
        for confidence in report.confidence.tolist():
            self.shadow_confidence.observe(confidence)

    def observe_prediction(self, digit: int, confidence: float) -> None:
        self._digit_counters[digit].inc()
        self.confidence.observe(confidence)

    def observe_predictions(self, counts: Sequence[int], confidences: Iterable[float]) -> None:
        """Many answers at once: ``counts[d]`` of digit ``d``, and each one's confidence."""
        for counter, count in zip(self._digit_counters, counts, strict=True):
            if count:
                counter.inc(count)
        for confidence in confidences:
            self.confidence.observe(confidence)

    def worker_replaced(self, reason: str, hung_for: float | None = None) -> None:
        """A worker replaced for ``reason``; one that hung also times its image's decode."""
        self.worker_restarts.labels(reason).inc()
        if hung_for is not None:
            self.preprocess_duration.observe(hung_for)

    def observe_correction(self, predicted: str, corrected: str) -> None:
        self.corrections.labels(predicted, corrected).inc()

    def prepare_corrections(self, answers: Sequence[str]) -> None:
        """Every (predicted, corrected) pair of ``answers`` at 0: a series that first appears
        at 1 is a step no rate() or increase() sees, and corrections are few enough that the
        dashboard lost most of them."""
        for predicted in answers:
            for corrected in answers:
                self.corrections.labels(predicted, corrected)

    def observe_answer(
        self, answer: ImageResults | TensorResults, model: ModelInfo | None, call_size: int
    ) -> None:
        """A worker's account of a frame: each image's decode + normalisation time (refused
        ones too) and, for each the model ran on (not_a_digit too), its wait for the call; a
        V2 tensor's images waited together, so it is one wait."""
        if isinstance(answer, TensorResults):
            self.queue_wait.observe(answer.wait_s)
            return
        observe = self.preprocess_duration.observe
        for value in answer.seconds:
            observe(value)
        observe, errors = self.queue_wait.observe, answer.errors
        for index, value in enumerate(answer.waits):
            if index not in errors or isinstance(errors[index], NotADigit):
                observe(value)
        self.statistics.inputs(model, call_size, answer.seconds, errors)

    def exposition(self) -> bytes:
        return generate_latest(self._exposed)

    def close(self) -> None:
        """This front end is stopping: its live gauges no longer count."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)
