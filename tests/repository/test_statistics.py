"""Triton's statistics extension: the counts are the requests sent, the times add up."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.contract import DEFAULT_LABELS, ModelInfo
from service.repository.statistics import InferenceStatistics
from tests.service.images import draw_digit, png

SEVEN = png(draw_digit())
JUNK = b"not an image at all"


def tensor(count: int) -> dict[str, Any]:
    data = [0.0] * (784 * count)
    return {"name": "image", "datatype": "FP32", "shape": [count, 1, 28, 28], "data": data}


def test_counts_match_the_requests_sent(client: TestClient) -> None:
    for _ in range(5):
        assert client.post(
            "/predict", content=SEVEN, headers={"Content-Type": "image/png"}
        ).is_success
    for _ in range(2):  # a bad image fails its request
        assert (
            client.post("/predict", content=JUNK, headers={"Content-Type": "image/png"}).status_code
            == 400
        )
    files = [("files", ("a.png", SEVEN, "image/png")), ("files", ("b.png", SEVEN, "image/png"))]
    files.append(("files", ("c.png", JUNK, "image/png")))
    batch = client.post("/predict/batch", files=files)  # 2 inferences, 1 entry failed: a success
    assert batch.status_code == 200
    for _ in range(2):
        response = client.post("/v2/models/tiny/infer", json={"inputs": [tensor(4)]})
        assert response.status_code == 200
    bad_tensor = {"inputs": [{**tensor(1), "data": [2.0] * 784}]}  # refused before the model
    assert client.post("/v2/models/tiny/infer", json=bad_tensor).status_code == 400

    response = client.get("/v2/models/tiny/stats")
    assert response.status_code == 200
    (stats,) = response.json()["model_stats"]
    assert (stats["name"], stats["version"]) == ("tiny", "0")  # the V2 (integer) version
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 5 + 1 + 2
    assert inference["fail"]["count"] == 2
    assert stats["inference_count"] == 5 + 2 + 2 * 4
    for part in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[part]["count"] == 8, part
        assert inference[part]["ns"] > 0 or part == "compute_input", part
    parts = sum(inference[part]["ns"] for part in ("queue", "compute_infer"))
    assert 0 < parts <= inference["success"]["ns"]  # the parts of a request fit inside it
    assert inference["cache_hit"] == inference["cache_miss"] == {"count": 0, "ns": 0}
    batches = stats["batch_stats"]
    assert 1 <= stats["execution_count"] <= stats["inference_count"]
    assert sum(entry["compute_infer"]["count"] for entry in batches) == stats["execution_count"]
    assert (
        sum(entry["batch_size"] * entry["compute_infer"]["count"] for entry in batches)
        == stats["inference_count"]
    )
    assert stats["last_inference"] > 1_600_000_000_000  # milliseconds since the epoch

    for version in ("0", "0.0.1"):  # the integer or the model's own version
        assert client.get(f"/v2/models/tiny/versions/{version}/stats").json()["model_stats"] == [
            stats
        ]
    assert client.get("/v2/models/stats").json()["model_stats"] == [stats]


def test_unknown_models_and_versions_are_404(client: TestClient) -> None:
    for path in ("/v2/models/resnet/stats", "/v2/models/tiny/versions/9/stats"):
        response = client.get(path)
        assert response.status_code == 404 and "has not served here" in response.json()["error"]


def test_a_fresh_model_is_listed_with_zero_counts(client: TestClient) -> None:
    (stats,) = client.get("/v2/models/tiny/stats").json()["model_stats"]
    assert stats["inference_count"] == stats["execution_count"] == 0
    assert stats["inference_stats"]["success"] == {"count": 0, "ns": 0}
    assert "statistics" in client.get("/v2").json()["extensions"]


def _model(name: str, version: str) -> ModelInfo:
    return ModelInfo(
        name=name,
        version=version,
        sha256=f"{name}-{version}",
        provider="CPUExecutionProvider",
        path=f"{name}.onnx",
        input_name="image",
        input_shape=("N", 1, 28, 28),
        output_name="probabilities",
        output_shape=("N", 10),
        labels=DEFAULT_LABELS,
        val_accuracy=None,
        test_accuracy=None,
        created_at=None,
    )


def test_a_model_dropped_from_the_kept_versions_is_counted_again_when_it_serves_again() -> None:
    """Dropping the oldest entry forgot its model under the newest entry's name, so a model
    of another name kept its dropped entry: what it served next was counted where no report
    looks."""
    statistics = InferenceStatistics(kept=1)
    first, second = _model("first", "1.0.0"), _model("second", "1.0.0")
    statistics.of(first)
    statistics.of(second)  # one version kept: first's entry goes
    statistics.succeeded(first, 0.01, (0.0, 0.0, 0.0), 0.0)  # a load brought it back
    (entry,) = statistics.report("first")
    assert entry["inference_stats"]["success"]["count"] == 1
    assert [entry["name"] for entry in statistics.report()] == ["first"]
