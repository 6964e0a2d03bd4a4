"""Every endpoint and request form through the app (TestClient runs the lifespan)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import Settings
from tests.service.images import draw_digit, encode, png

SEVEN = png(draw_digit())


def assert_prediction(body: dict[str, Any]) -> None:
    assert set(body) >= {"digit", "confidence", "probabilities", "model"}
    assert 0 <= body["digit"] <= 9 and len(body["probabilities"]) == 10
    assert body["confidence"] == max(body["probabilities"])
    assert body["probabilities"].index(body["confidence"]) == body["digit"]
    assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert body["model"] == {"name": "tiny", "version": "0.0.1"}


def test_multipart_upload(client: TestClient) -> None:
    response = client.post("/predict", files={"file": ("seven.png", SEVEN, "image/png")})
    assert response.status_code == 200, response.text
    assert_prediction(response.json())
    assert "normalized_image" not in response.json()


def test_raw_body_and_json_base64_give_the_same_answer(client: TestClient) -> None:
    multipart = client.post("/predict", files={"file": ("a.png", SEVEN, "image/png")}).json()
    raw = client.post("/predict", content=SEVEN, headers={"Content-Type": "image/png"}).json()
    as_json = client.post("/predict", json={"image": base64.b64encode(SEVEN).decode()}).json()
    data_url = "data:image/png;base64," + base64.b64encode(SEVEN).decode()
    with_prefix = client.post("/predict", json={"image": data_url}).json()
    assert multipart == raw == as_json == with_prefix


def test_url_safe_and_unpadded_base64_are_read_too(client: TestClient) -> None:
    standard = base64.b64encode(SEVEN).decode()
    assert "=" in standard and {"+", "/"} <= set(standard)  # both differences are exercised
    expected = client.post("/predict", json={"image": standard}).json()
    url_safe = base64.urlsafe_b64encode(SEVEN).decode().rstrip("=")
    assert client.post("/predict", json={"image": url_safe}).json() == expected
    unpadded = client.post("/predict", json={"image": standard.rstrip("=")})
    assert unpadded.json() == expected
    mixed = client.post("/predict", json={"image": url_safe.replace("-", "+", 1)})
    assert mixed.status_code == 422
    assert "alphabets" in mixed.json()["error"]["message"]


def test_octet_stream_is_a_raw_image(client: TestClient) -> None:
    response = client.post(
        "/predict", content=SEVEN, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert_prediction(response.json())


def test_include_image_returns_the_normalised_input(client: TestClient) -> None:
    response = client.post(
        "/predict?include_image=true", content=SEVEN, headers={"Content-Type": "image/png"}
    )
    body = response.json()
    assert_prediction(body)
    image = Image.open(io.BytesIO(base64.b64decode(body["normalized_image"])))
    assert image.size == (28, 28) and image.mode == "L"
    pixels = np.asarray(image)
    assert pixels[0].max() == 0 and pixels.max() == 255


def test_batch_answers_in_order_with_per_entry_errors(client: TestClient) -> None:
    files = [
        ("files", ("one.png", SEVEN, "image/png")),
        ("files", ("broken.png", b"garbage", "image/png")),
        ("files", ("blank.png", png(Image.new("L", (50, 50), 255)), "image/png")),
        ("files", ("three.jpg", encode(draw_digit().convert("RGB"), "JPEG"), "image/jpeg")),
    ]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text
    entries = response.json()["predictions"]
    assert [entry["filename"] for entry in entries] == [
        "one.png",
        "broken.png",
        "blank.png",
        "three.jpg",
    ]
    assert_prediction(entries[0])
    assert entries[1]["error"]["code"] == "invalid_image"
    assert entries[2]["error"]["code"] == "no_ink"
    assert_prediction(entries[3])
    single = client.post("/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    assert entries[0]["probabilities"] == pytest.approx(single.json()["probabilities"], abs=1e-6)


def test_batch_over_the_file_limit_is_refused(tiny_onnx: Path) -> None:
    settings = Settings(model_path=tiny_onnx, max_batch_files=2)
    with TestClient(create_app(settings)) as small:
        files = [("files", (f"{i}.png", SEVEN, "image/png")) for i in range(3)]
        response = small.post("/predict/batch", files=files)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert "2" in response.json()["error"]["message"]


def test_batch_needs_files(client: TestClient) -> None:
    response = client.post("/predict/batch", files={"file": ("a.png", SEVEN, "image/png")})
    assert response.status_code == 422
    assert "'files'" in response.json()["error"]["message"]
    wrong_type = client.post("/predict/batch", content=SEVEN, headers={"Content-Type": "image/png"})
    assert wrong_type.status_code == 415


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_not_ready_before_the_lifespan_ran(service_settings: Settings) -> None:
    app = create_app(service_settings)
    bare = TestClient(app)  # no `with`: the lifespan never ran, the model is not loaded
    assert bare.get("/healthz").status_code == 200
    response = bare.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    predict = bare.post("/predict", content=SEVEN, headers={"Content-Type": "image/png"})
    assert predict.status_code == 503 and predict.json()["error"]["code"] == "not_ready"


def test_model_metadata(client: TestClient, tiny_onnx: Path) -> None:
    import hashlib

    body = client.get("/model").json()
    assert body["name"] == "tiny" and body["version"] == "0.0.1"
    assert body["sha256"] == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert body["provider"] == "CPUExecutionProvider"
    assert body["input"] == {"name": "image", "dtype": "float32", "shape": ["N", 1, 28, 28]}
    assert body["output"] == {"name": "probabilities", "dtype": "float32", "shape": ["N", 10]}
    assert body["labels"] == [str(d) for d in range(10)]


def test_model_card_accuracy_is_reported(tmp_path: Path, tiny_onnx: Path) -> None:
    import hashlib
    import json
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    card = {"sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "test_accuracy": 0.9912}
    (tmp_path / "m.json").write_text(json.dumps(card))
    with TestClient(create_app(Settings(model_path=model))) as with_card:
        body = with_card.get("/model").json()
    assert body["test_accuracy"] == 0.9912 and body["card"]["sha256"] == card["sha256"]


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(generated.headers["x-request-id"]) == 32
    assert client.get("/nope").headers["x-request-id"]


def test_openapi_documents_bodies_answers_and_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {
        "multipart/form-data",
        "image/*",
        "application/octet-stream",
        "application/json",
    }
    assert {"200", "400", "413", "415", "422", "503"} <= set(predict["responses"])
    # Consistent here; tests/docs checks it is the shipped model's real answer.
    (example,) = schema["components"]["schemas"]["Prediction"]["examples"]
    assert example["probabilities"][example["digit"]] == example["confidence"]
    assert "/predict/batch" in schema["paths"] and "/model" in schema["paths"]
    batch = schema["paths"]["/predict/batch"]["post"]["requestBody"]["content"]
    files = batch["multipart/form-data"]["schema"]["properties"]["files"]
    assert (files["minItems"], files["maxItems"]) == (
        1,
        Settings.model_fields["max_batch_files"].default,
    )
    for path in ("/predict", "/predict/batch"):
        flags = schema["paths"][path]["post"]["parameters"]
        assert [(flag["name"], flag["in"], flag["schema"]["type"]) for flag in flags] == [
            ("include_image", "query", "boolean"),
            ("explain", "query", "boolean"),
        ]
    explanation = schema["components"]["schemas"]["Explanation"]["properties"]
    assert {"method", "target", "values", "overlay"} <= set(explanation)
    assert client.get("/docs").status_code == 200


def test_a_long_unknown_path_is_echoed_short(client: TestClient) -> None:
    """A 404 repeated a 30 KB path in its body (its access line: tests/integration)."""
    path = "/" + "a" * 30_000
    for response in (client.get(path), client.put("/predict" + path)):
        assert response.status_code == 404
        message = response.json()["error"]["message"]
        assert message.startswith("no route /") and message.endswith("aaa...")
        assert len(message) < 100


def test_unknown_route_and_wrong_method_use_the_error_body(client: TestClient) -> None:
    missing = client.get("/does-not-exist")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": "not_found", "message": "no route /does-not-exist"}
    wrong = client.get("/predict")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"


def test_a_405_names_every_method_the_path_takes(client: TestClient) -> None:
    """/feedback has a GET route and a POST route; Starlette's own Allow named only GET. HEAD
    goes where GET goes."""
    wrong = client.put("/feedback")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD, POST"
    assert client.post("/").headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/model", "/metrics", "/v2/health/ready", "/v2/models/tiny"]
)
def test_head_is_answered_wherever_get_is(client: TestClient, path: str) -> None:
    """Uptime checks and ``curl -I`` ask with HEAD: FastAPI's GET routes answered 405."""
    got = client.get(path)
    head = client.head(path)
    assert got.status_code == head.status_code == 200
    assert head.headers["content-type"] == got.headers["content-type"]
    assert client.head("/predict").status_code == 405


def test_a_trailing_slash_is_no_route_and_no_redirect(client: TestClient) -> None:
    """A redirect to the same path without the slash was built from the client's Host header
    (an open redirect, and http:// behind TLS)."""
    answer = client.get("/healthz/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert answer.status_code == 404 and "location" not in answer.headers
    assert answer.json()["error"]["code"] == "not_found"


def test_bad_query_parameter_is_a_validation_error(client: TestClient) -> None:
    for value in ("maybe", ""):
        response = client.post(
            f"/predict?include_image={value}", content=SEVEN, headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_error"
        assert "include_image" in response.json()["error"]["message"]


@pytest.mark.parametrize(("value", "included"), [("TRUE", True), ("yes", True), ("0", False)])
def test_include_image_reads_booleans_as_pydantic_does(
    client: TestClient, value: str, included: bool
) -> None:
    response = client.post(
        f"/predict?include_image={value}", content=SEVEN, headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200
    assert ("normalized_image" in response.json()) is included


def test_model_metadata_values_come_back_structured(tmp_path: Path) -> None:
    """JSON objects and lists stored in metadata_props are objects and lists in /model, not
    JSON text inside JSON; plain strings stay strings, even when they look like numbers."""
    import json

    from tests.conftest import build_onnx_model

    fonts = {"DejaVuSans.ttf": "0d97", "LiberationSerif-Italic.ttf": "b747"}
    metadata = {
        "name": "tiny",
        "version": "1.0.0",
        "seed": "1",
        "labels": json.dumps([str(d) for d in range(10)]),
        "normalization": json.dumps({"mean": 0.1307, "std": 0.3081, "in_graph": True}),
        "fonts": json.dumps(fonts),
        "note": "[draft, not JSON",
    }
    model = build_onnx_model(tmp_path / "m.onnx", metadata=metadata)
    with TestClient(create_app(Settings(model_path=model))) as with_metadata:
        answer = with_metadata.get("/model")
    assert answer.status_code == 200
    stored = answer.json()["metadata"]
    assert stored["fonts"] == fonts
    assert stored["labels"] == [str(d) for d in range(10)]
    assert stored["normalization"] == {"mean": 0.1307, "std": 0.3081, "in_graph": True}
    assert stored["version"] == "1.0.0" and stored["seed"] == "1"
    assert stored["note"] == "[draft, not JSON"
