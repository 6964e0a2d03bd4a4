"""Metrics through a real scrape: parse the exposition, assert that values move."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from tests.service.images import draw_digit, png

SEVEN = png(draw_digit())


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# Kubernetes' probes (deploy/k8s: /healthz; deploy/kserve: /v2/health/*) and readiness checks.
PROBES = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")


def test_request_and_prediction_metrics_move(client: TestClient) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.post(
            "/predict", content=SEVEN, headers={"Content-Type": "image/png"}
        ).is_success
    client.post("/predict", content=b"junk", headers={"Content-Type": "image/png"})
    for probe in PROBES:
        client.get(probe)
    client.get("/no/such/path")
    after = scrape(client)
    ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert (
        value(after, "digits_http_requests_total", **ok)
        - value(before, "digits_http_requests_total", **ok)
        == 3
    )
    bad = {"route": "/predict", "method": "POST", "status": "400"}
    assert value(after, "digits_http_requests_total", **bad) == 1
    assert value(after, "digits_http_request_duration_seconds_count", **ok) == 3
    assert (
        value(after, "digits_http_requests_total", route="<unmatched>", method="GET", status="404")
        == 1
    )
    assert not any(  # probes every few seconds would swamp the traffic's rates and latencies
        labels and dict(labels).get("route") in (*PROBES, "/metrics") for (_, labels) in after
    )
    predicted = sum(value(after, "digits_predictions_total", digit=str(d)) for d in range(10))
    assert predicted == 3
    assert value(after, "digits_prediction_confidence_count") == 3
    assert value(after, "digits_preprocess_duration_seconds_count") == 4  # the junk too
    assert value(after, "digits_inference_duration_seconds_count") >= 3
    assert value(after, "digits_batch_size_sum") >= 3
    assert value(after, "digits_queue_wait_seconds_count") >= 3
    assert value(after, "digits_http_requests_in_flight") == 0


def test_model_info_ready_and_process_metrics(client: TestClient) -> None:
    samples = scrape(client)
    info = [labels for (name, labels) in samples if name == "digits_model_info"]
    assert len(info) == 1
    labels = dict(info[0])
    assert labels["name"] == "tiny" and labels["version"] == "0.0.1"
    assert labels["provider"] == "CPUExecutionProvider" and len(labels["sha256"]) == 64
    assert value(samples, "digits_model_ready") == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert any(name.startswith("python_info") for (name, _) in samples)
    assert value(samples, "digits_rejected_total", reason="overloaded") == 0


def test_blank_images_are_counted_as_refused(client: TestClient) -> None:
    """A blank image is answered no_ink: a 422 alone, but a batch of them answers 200 with
    per-image errors, in no metric at all. A client sending empty crops now shows in
    digits_rejected_total{reason="no_ink"}, one per image; every reason has a series at 0."""
    blank = png(Image.new("L", (64, 64), 255))
    before = scrape(client)
    for reason in ("payload_too_large", "bad_request", "no_ink", "not_a_digit"):
        assert ("digits_rejected_total", (("reason", reason),)) in before, reason
    assert (
        client.post("/predict", content=blank, headers={"Content-Type": "image/png"}).status_code
        == 422
    )
    files = [("files", (f"{i}.png", blank, "image/png")) for i in range(3)]
    assert client.post("/predict/batch", files=files).status_code == 200
    after = scrape(client)
    added = value(after, "digits_rejected_total", reason="no_ink") - value(
        before, "digits_rejected_total", reason="no_ink"
    )
    assert added == 4


def test_v2_answers_are_counted_as_predictions(client: TestClient) -> None:
    """A V2-only deployment (KServe's) left digits_predictions_total and the confidence
    histogram at 0, so the quality alerts and panels never saw its traffic: each image's
    argmax and its probability are counted as /predict's answers are."""
    tensor = {"name": "image", "datatype": "FP32", "shape": [3, 1, 28, 28], "data": [0.5] * 2352}
    before = scrape(client)
    response = client.post("/v2/models/tiny/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    rows = response.json()["outputs"][0]["data"]
    after = scrape(client)

    def added(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    digit = max(range(10), key=lambda d: rows[d])  # three identical images
    assert added("digits_predictions_total", digit=str(digit)) == 3
    assert added("digits_prediction_confidence_count") == 3
    assert added("digits_prediction_confidence_sum") == pytest.approx(3 * rows[digit], rel=1e-5)


def test_v2_requests_count_their_wait_and_keep_their_route_when_refused(
    client: TestClient,
) -> None:
    """A V2 request's wait for its model call was in no observation (a V2-only deployment
    had no queue-wait signal), and one refused 413 from its Content-Length, before routing,
    was counted as route "<unmatched>", out of every panel and alert on prediction routes."""
    tensor = {"name": "image", "datatype": "FP32", "shape": [2, 1, 28, 28], "data": [0.5] * 1568}
    before = scrape(client)
    assert client.post("/v2/models/tiny/infer", json={"inputs": [tensor]}).status_code == 200
    oversized = b"0" * (Settings().max_body_bytes + 1)
    headers = {"Content-Type": "application/json"}
    for path in ("/v2/models/tiny/infer", "/v2/models/tiny/versions/0.0.1/infer"):
        assert client.post(path, content=oversized, headers=headers).status_code == 413
    after = scrape(client)
    waits = value(after, "digits_queue_wait_seconds_count")
    assert waits - value(before, "digits_queue_wait_seconds_count") == 1  # waited together
    for route in (
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        labels = {"route": route, "method": "POST", "status": "413"}
        assert value(after, "digits_http_requests_total", **labels) == 1, route
    assert (
        value(after, "digits_http_requests_total", route="<unmatched>", method="POST", status="413")
        == 0
    )


def test_two_apps_in_one_process_have_separate_registries(tiny_onnx: Path) -> None:
    settings = Settings(model_path=tiny_onnx)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        first.post("/predict", content=SEVEN, headers={"Content-Type": "image/png"})
        labels = {"route": "/predict", "method": "POST", "status": "200"}
        assert value(scrape(first), "digits_http_requests_total", **labels) == 1
        assert value(scrape(second), "digits_http_requests_total", **labels) == 0


def test_head_requests_are_labelled_with_their_route(client: TestClient) -> None:
    """HEAD is answered as GET on a copy of the request's scope (HeadAsGet); the route the
    router found there must reach the metrics, not "<unmatched>" as for an unknown path."""
    before = scrape(client)
    assert client.head("/model").status_code == 200
    assert client.head("/v2/models/tiny").status_code == 200
    after = scrape(client)
    for route in ("/model", "/v2/models/{model_name}"):
        labels = {"route": route, "method": "HEAD", "status": "200"}
        moved = value(after, "digits_http_requests_total", **labels) - value(
            before, "digits_http_requests_total", **labels
        )
        assert moved == 1, route
    unmatched = {"route": "<unmatched>", "method": "HEAD", "status": "200"}
    assert value(after, "digits_http_requests_total", **unmatched) == 0


def test_the_openapi_document_is_counted_under_its_route(client: TestClient) -> None:
    """FastAPI serves /openapi.json with a plain Starlette route, which names no route in the
    request's scope: it was counted as "<unmatched>", the label of unknown paths."""
    for method in ("GET", "HEAD"):
        assert client.request(method, "/openapi.json").status_code == 200
    after = scrape(client)
    for method in ("GET", "HEAD"):
        labels = {"route": "/openapi.json", "method": method, "status": "200"}
        assert value(after, "digits_http_requests_total", **labels) == 1
        unmatched = {"route": "<unmatched>", "method": method, "status": "200"}
        assert value(after, "digits_http_requests_total", **unmatched) == 0


def test_prediction_routes_have_5xx_series_from_the_start(tiny_onnx: Path) -> None:
    """A counter series born at its first increment has no rate until it moves again: 503s
    that all fell between two scrapes (a burst past the queue) showed no 5xx rate at all, and
    the error-ratio panels stayed at "No data" until the first 5xx. The prediction routes'
    5xx series exist at 0 before any request."""
    with TestClient(create_app(Settings(model_path=tiny_onnx))) as fresh:
        samples = scrape(fresh)
    routes = (
        "/predict",
        "/predict/batch",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    )
    for route in routes:
        for status in ("500", "503"):
            labels = {"route": route, "method": "POST", "status": status}
            key = ("digits_http_requests_total", tuple(sorted(labels.items())))
            assert samples.get(key) == 0, labels
