"""Traces: a real OTLP/HTTP receiver in this process, the real server exporting to it.

The span tree of a request: the request's span (a child of the client's traceparent), and
under it the worker's ``queue wait``, ``preprocess``, ``inference`` and ``explain`` for each
frame, in time order; the trace id in the answer's
traceparent header and in the access line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.otlp import ReceivedSpan, Receiver, running_receiver
from bench.server import RunningService, running_service
from tests.conftest import tiny_model_env
from tests.service.images import draw_digit, png

pytestmark = pytest.mark.slow
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER
WORKER_SPANS = ("queue wait", "preprocess", "inference")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced(receiver: Receiver, tiny_onnx: Path) -> Iterator[RunningService]:
    env = {
        **tiny_model_env(tiny_onnx),
        "DIGITS_PREPROCESS_WORKERS": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
    }
    with running_service(env) as server:
        yield server


def _trace(receiver: Receiver, trace_id: str, spans: int) -> list[ReceivedSpan]:
    found = receiver.wait_for(lambda all_: sum(s.trace_id == trace_id for s in all_) >= spans)
    return [span for span in found if span.trace_id == trace_id]


def _span(receiver: Receiver, trace_id: str, name: str) -> ReceivedSpan:
    """The trace's span of that name, once it has come: the workers' spans of the same
    trace may come first (each process exports its own)."""

    def arrived(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        return [s for s in spans if s.trace_id == trace_id and s.name == name]

    (span,) = arrived(receiver.wait_for(lambda all_: bool(arrived(all_))))
    return span


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans if span.parent_span_id == parent.span_id}


def test_a_request_is_one_trace_with_the_workers_spans_in_order(
    traced: RunningService, receiver: Receiver
) -> None:
    response = httpx.post(
        f"{traced.url}/predict?explain=true",
        content=png(draw_digit()),
        headers={
            "Content-Type": "image/png",
            "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
            "X-Request-ID": "traced-1",
        },
    )
    assert response.status_code == 200
    version, trace_id, span_id, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01") and span_id != CLIENT_SPAN

    spans = _trace(receiver, CLIENT_TRACE, 5)
    (request,) = [span for span in spans if span.parent_span_id == CLIENT_SPAN]
    assert (request.name, request.kind, request.span_id) == ("POST /predict", SERVER_KIND, span_id)
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["digits.outcome"] == "ok"
    assert request.attributes["digits.images"] == 1
    assert request.attributes["digits.model.version"] == "0.0.1"
    assert request.attributes["digits.request_id"] == "traced-1"
    assert request.resource["service.name"] == "digits"
    assert request.resource["deployment.environment"] == "test"

    steps = _children(spans, request)
    assert set(steps) == {*WORKER_SPANS, "explain"}
    order = [steps[name] for name in (*WORKER_SPANS, "explain")]
    assert request.start_ns <= order[0].start_ns
    for earlier, later in zip(order, order[1:], strict=False):
        assert earlier.start_ns <= earlier.end_ns <= later.start_ns + 1000  # 1 us of rounding
    assert order[-1].end_ns <= request.end_ns
    assert steps["preprocess"].attributes["digits.images"] == 1
    assert steps["inference"].attributes["digits.model_batch_size"] == 1
    assert steps["preprocess"].attributes["digits.preprocess_cpu_seconds"] > 0

    access = [json.loads(line) for line in traced.log().splitlines() if '"service.access"' in line]
    (line,) = [entry for entry in access if entry.get("request_id") == "traced-1"]
    assert line["trace_id"] == CLIENT_TRACE


def test_a_batch_and_a_refused_image_are_traced_with_their_outcome(
    traced: RunningService, receiver: Receiver
) -> None:
    files = [("files", (f"{i}.png", png(draw_digit()), "image/png")) for i in range(3)]
    batch = httpx.post(f"{traced.url}/predict/batch", files=files)
    batch_trace = batch.headers["traceparent"].split("-")[1]
    spans = _trace(receiver, batch_trace, 4)
    (request,) = [span for span in spans if span.name == "POST /predict/batch"]
    assert request.parent_span_id == "" and request.attributes["digits.images"] == 3
    assert set(_children(spans, request)) == set(WORKER_SPANS)  # no explain: not asked

    bad = httpx.post(
        f"{traced.url}/predict", content=b"not an image", headers={"Content-Type": "image/png"}
    )
    assert bad.status_code == 400
    bad_trace = bad.headers["traceparent"].split("-")[1]
    refused = _span(receiver, bad_trace, "POST /predict")
    assert refused.attributes["digits.outcome"] == "invalid_image"
    assert refused.attributes["http.response.status_code"] == 400


def test_health_and_scrapes_are_not_traced(traced: RunningService) -> None:
    assert "traceparent" not in httpx.get(f"{traced.url}/healthz").headers
    assert "traceparent" in httpx.get(f"{traced.url}/model").headers  # other routes are


def test_tracing_is_off_by_default(client: object) -> None:
    response = client.post(  # type: ignore[attr-defined]
        "/predict", content=png(draw_digit()), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200 and "traceparent" not in response.headers
