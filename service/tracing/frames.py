"""The worker's part of a request's trace, made in the server from what the worker reports.

A TRACED frame carries the request's trace context to the worker and comes back with the
worker's timings (service/workers/extras.py); each frame becomes spans under the request's:
``queue wait`` (sent, until the worker's batch began preprocessing), ``preprocess``,
``inference`` (the batch's model call) and ``explain``. Four spans, not a parent per frame
besides: the SDK spends tens of microseconds of the event loop's time on each span
(docs/performance.md). The worker exports nothing itself: no exporter, thread or connection
per worker process, and its clock is the server's (time.monotonic, one clock per machine).
"""

from __future__ import annotations

import time

from opentelemetry import trace

from service.workers.protocol import ImageResults

_NS = 1_000_000_000


class WorkerSpans:
    """The predictor's hooks (service/predictor.py, FrameTracing)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def frame_context(self, images: int, model: dict[str, str]) -> bytes | None:
        """The current request's trace context for its frames (W3C binary), after noting its
        size and model on its span; None when it is not recorded (tracing off or sampled out)."""
        span = trace.get_current_span()
        if not span.is_recording():
            return None
        span.set_attributes(
            {
                "digits.images": images,
                "digits.model.name": model.get("name", ""),
                "digits.model.version": model.get("version", ""),
            }
        )
        ctx = span.get_span_context()
        return (
            ctx.trace_id.to_bytes(16, "big")
            + ctx.span_id.to_bytes(8, "big")
            + bytes([int(ctx.trace_flags)])
        )

    def record(self, results: ImageResults, images: int) -> None:
        """The spans of one frame of ``images`` images, under the current request's span."""
        timing = results.timing
        if timing is None:
            return
        offset = time.time_ns() - time.monotonic_ns()

        def ns(seconds: float) -> int:
            return int(seconds * _NS) + offset

        spans: list[tuple[str, float, float, dict[str, int | float]]] = [
            ("queue wait", timing.sent_at, timing.preprocess_start, {}),
            (
                "preprocess",
                timing.preprocess_start,
                timing.model_start,
                {
                    "digits.images": images,
                    "digits.refused_images": len(results.errors),
                    "digits.preprocess_cpu_seconds": float(sum(results.seconds)),
                },
            ),
            (
                "inference",
                timing.model_start,
                timing.model_end,
                {"digits.model_batch_size": timing.model_batch},
            ),
        ]
        if timing.explain_end:
            spans.append(("explain", timing.explain_start, timing.explain_end, {}))
        for name, start, end, attributes in spans:
            span = self._tracer.start_span(name, start_time=ns(start), attributes=attributes)
            span.end(end_time=ns(end))
