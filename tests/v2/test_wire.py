"""The V2 wire format byte by byte: what hand-written and other V2 clients may send."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import Overloaded
from service.http.state import app_state
from service.settings import Settings
from tests.v2.conftest import MODEL_NAME, LiveServer

INFER = f"/v2/models/{MODEL_NAME}/infer"


def _header(batch: int = 1, **tensor: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [batch, 1, 28, 28], **tensor}]
    }


def _binary(images: np.ndarray, size: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = images.astype("<f4").tobytes()
    header = json.dumps(
        _header(len(images), parameters={"binary_data_size": len(raw) if size is None else size})
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_health_bodies_are_what_kserve_sdk_reads(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get(f"/v2/models/{MODEL_NAME}/ready").json() == {"name": MODEL_NAME, "ready": True}


def test_json_without_content_type_is_json(http: httpx.Client) -> None:
    body = json.dumps(_header(data=[0.5] * 784, id="x")).encode()
    response = http.post(INFER, content=body, headers={"Content-Type": ""})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    (output,) = response.json()["outputs"]
    assert output["shape"] == [1, 10] and len(output["data"]) == 10
    assert sum(output["data"]) == pytest.approx(1.0, abs=1e-5)


def test_json_sent_as_octet_stream_is_json(http: httpx.Client) -> None:
    """tritonclient.http.aio posts JSON requests through aiohttp, whose default Content-Type
    for bytes is application/octet-stream; Triton reads them by the header, as JSON."""
    body = json.dumps({**_header(data=[0.5] * 784), "id": "aio"}).encode()
    response = http.post(INFER, content=body, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "aio"
    assert response.json()["outputs"][0]["shape"] == [1, 10]


def test_nested_json_data_is_accepted(http: httpx.Client) -> None:
    nested = np.full((2, 1, 28, 28), 0.25).tolist()
    response = http.post(INFER, json=_header(2, data=nested))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [2, 10]


def test_an_empty_outputs_list_asks_for_every_output(http: httpx.Client) -> None:
    """As in Triton, which requests every output of the model when none is named: a client
    that always sends the list, empty by default, was refused with 400."""
    response = http.post(INFER, json={**_header(data=[0.5] * 784), "outputs": []})
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [1, 10]


@pytest.mark.parametrize("huge", [10**30, -(10**30), 10**400], ids=["1e30", "-1e30", "1e400"])
def test_a_huge_integer_is_a_number_out_of_range(http: httpx.Client, huge: int) -> None:
    """An integer past int64 made numpy's array one of objects, refused as "numbers only"
    though it is one; one past float64's range must not be a 500 either."""
    response = http.post(INFER, content=json.dumps(_header(data=[huge] + [0.0] * 783)))
    assert response.status_code == 400, response.text
    assert "values must lie in 0..1" in response.json()["error"]


def test_octet_stream_binary_answers_binary(http: httpx.Client) -> None:
    body, headers = _binary(np.zeros((3, 1, 28, 28), dtype=np.float32))
    headers["Content-Type"] = "application/octet-stream"
    response = http.post(INFER, content=body, headers=headers)
    assert response.status_code == 200, response.text
    # No outputs listed and no binary_data_output: the answer is plain JSON.
    assert response.json()["outputs"][0]["shape"] == [3, 10]


def test_a_raw_binary_request_is_one_image_answered_in_binary(
    http: httpx.Client, v2_server: LiveServer
) -> None:
    """Triton's raw binary request: Inference-Header-Content-Length 0 and the tensor alone."""
    image = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "0"}
    response = http.post(INFER, content=image.astype("<f4").tobytes(), headers=headers)
    assert response.status_code == 200, response.text
    size = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:size])
    (output,) = header["outputs"]
    assert output["shape"] == [1, 10] and output["parameters"]["binary_data_size"] == 40
    probabilities = np.frombuffer(response.content[size:], dtype="<f4")
    expected = ort.InferenceSession(str(v2_server.model_path)).run(None, {"image": image})[0]
    np.testing.assert_allclose(probabilities, expected[0], rtol=1e-5)
    for wrong in (image[0, 0, 0].tobytes(), np.zeros((2, 1, 28, 28), np.float32).tobytes()):
        refused = http.post(INFER, content=wrong, headers=headers)
        assert refused.status_code == 400
        assert "of shape [1, 1, 28, 28]: 3136 bytes" in refused.json()["error"]


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"{not json", {}, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, {}, "nested too deeply"),
        (b'{"inputs": [{"data": [' + b"9" * 5000 + b"]}]}", {}, "more than 4300 digits"),
        (b"9" * 5000 + b"\0" * 16, {"Inference-Header-Content-Length": "5000"}, "4300 digits"),
        # Deeper than json.loads takes, within orjson's 1,024: a 500 from the error message.
        (json.dumps(_header()).replace('"image"', "[" * 990 + "]" * 990).encode(), {}, "deeply"),
        # int() refuses past 4,300 digits: a header length that long was a 500.
        (b"{}", {"Inference-Header-Content-Length": "9" * 5000}, "is outside the body"),
        # Python's int() reads these as 10 and 2; Content-Length's grammar does not.
        (b"{}" + b"\0" * 16, {"Inference-Header-Content-Length": "1_0"}, "must be an integer"),
        (b"{}" + b"\0" * 16, {"Inference-Header-Content-Length": "+2"}, "must be an integer"),
        (b"[1, 2]", {}, "must be a JSON object"),
        (json.dumps({"inputs": []}).encode(), {}, "exactly one tensor"),
        (json.dumps(_header(data=[0.5] * 783)).encode(), {}, "has 783 values"),
        (json.dumps(_header(data=["0.5"] * 784)).encode(), {}, "must hold numbers only"),
        (json.dumps(_header(data=[[0.5], [0.5, 0.5]])).encode(), {}, "not a regular array"),
        (json.dumps(_header(data=[255.0] * 784)).encode(), {}, "values must lie in 0..1"),
        (json.dumps(_header(data=[float("nan")] * 784)).encode(), {}, "values must lie in 0..1"),
        (json.dumps(_header(0, data=[])).encode(), {}, "batch size 0 is outside"),
        (json.dumps(_header(shape=[1, 1, 28, 28.0], data=[0] * 784)).encode(), {}, "shape"),
        (json.dumps(_header()).encode(), {}, "neither 'data' nor"),
        (
            json.dumps({**_header(data=[0.5] * 784), "outputs": [{"name": "logits"}]}).encode(),
            {},
            "unknown output 'logits'",
        ),
        (
            json.dumps({**_header(data=[0.5] * 784), "outputs": [{"name": ["a"]}]}).encode(),
            {},
            "unknown output ['a']",
        ),
        (
            json.dumps({**_header(data=[0.5] * 784), "outputs": [{"name": {"a": 1}}]}).encode(),
            {},
            "unknown output {'a': 1}",
        ),
        (
            b"\0\0\0\0",
            {"Content-Type": "application/octet-stream"},
            "binary tensors need Inference-Header-Content-Length",
        ),
        (b"{}", {"Inference-Header-Content-Length": "abc"}, "must be an integer"),
        (b"{}", {"Inference-Header-Content-Length": "99"}, "outside the body"),
        (b"{}", {"Content-Encoding": "gzip"}, "not valid gzip"),
        (
            gzip.compress(b'{"inputs": []}', mtime=0)[:-12],
            {"Content-Encoding": "gzip"},
            "truncated gzip",
        ),
        (
            gzip.compress(b"{}", mtime=0) + b"{}",
            {"Content-Encoding": "gzip"},
            "2 bytes after its gzip",
        ),
    ],
)
def test_malformed_requests_are_400_with_error_string(
    http: httpx.Client, body: bytes, headers: dict[str, str], message: str
) -> None:
    response = http.post(INFER, content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and message in error


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v2/trace/setting", 0, 404),  # Triton's trace extension: not served
        ("GET", "/v2/systemsharedmemory/status", 0, 404),
        ("GET", f"/v2/models/{MODEL_NAME}/versions//infer", 0, 404),
        ("GET", INFER, 0, 405),
        ("DELETE", f"/v2/models/{MODEL_NAME}", 0, 405),
        ("POST", INFER, Settings().max_body_bytes + 1, 413),
    ],
    ids=["trace", "shared memory", "empty version", "GET infer", "DELETE model", "over the limit"],
)
def test_every_refusal_on_a_v2_path_is_the_protocols_error_string(
    http: httpx.Client, method: str, path: str, body: int, status: int
) -> None:
    """Not only the V2 routes' own errors: the router's 404 and 405 and the body limit's 413
    too, or tritonclient fails on the body (str + dict) instead of showing the message."""
    response = http.request(method, path, content=b"\0" * body if body else None)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error


@pytest.mark.parametrize("path", ["generate", "generate_stream", "versions/1/generate"])
def test_the_generate_extension_is_named_as_not_served(http: httpx.Client, path: str) -> None:
    response = http.post(f"/v2/models/{MODEL_NAME}/{path}", json={"image": [0.0] * 784})
    assert response.status_code == 404
    assert "Triton's generate extension is not served here" in response.json()["error"]


def test_refusals_elsewhere_keep_the_services_error_object(http: httpx.Client) -> None:
    for response in (http.get("/v2x"), http.get("/predict"), http.get("/nothing/v2")):
        assert response.status_code in (404, 405)
        assert set(response.json()["error"]) == {"code", "message"}


def test_an_encoding_the_server_cannot_undo_is_415(http: httpx.Client) -> None:
    response = http.post(INFER, content=b"{}", headers={"Content-Encoding": "br"})
    assert response.status_code == 415
    assert "unsupported Content-Encoding 'br'" in response.json()["error"]


@pytest.mark.parametrize(
    ("accept", "coding"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip;q=0.5, deflate", "deflate"),
        ("gzip;q=0, deflate;q=0", None),
        ("br", None),
        ("*", "gzip"),
        ("identity", None),
    ],
)
def test_an_answer_is_compressed_as_the_client_accepts(
    http: httpx.Client, accept: str, coding: str | None
) -> None:
    """tritonclient's response_compression_algorithm sends Accept-Encoding: gzip or deflate,
    and Triton compresses its answer; ours always came plain."""
    body = json.dumps(_header(64, data=[0.5] * (64 * 784))).encode()
    plain = http.post(INFER, content=body, headers={"Accept-Encoding": "identity"})
    response = http.post(INFER, content=body, headers={"Accept-Encoding": accept})
    assert response.status_code == 200 and "content-encoding" not in plain.headers
    assert response.headers.get("content-encoding") == coding
    assert response.content == plain.content  # httpx undoes the coding it was given
    # Every negotiated answer says so, plain ones too (RFC 9110 12.5.5): a cache that kept
    # a plain answer would otherwise serve it to clients that asked for gzip, and the reverse.
    assert response.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
    if coding is not None:
        assert response.num_bytes_downloaded < len(plain.content) / 2


def test_a_small_answer_is_sent_plain(http: httpx.Client) -> None:
    """One image's answer is smaller than a compressed stream's cost: plain, even to a client
    that accepts gzip (as httpx, requests and Go's client do by default)."""
    body = json.dumps(_header(data=[0.5] * 784)).encode()
    response = http.post(INFER, content=body, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"


def test_binary_size_mismatches_are_400(http: httpx.Client) -> None:
    images = np.zeros((2, 1, 28, 28), dtype=np.float32)
    body, headers = _binary(images, size=100)
    response = http.post(INFER, content=body, headers=headers)
    assert response.status_code == 400
    assert "declares binary_data_size 100" in response.json()["error"]
    body, headers = _binary(images)
    response = http.post(INFER, content=body + b"\0\0\0\0", headers=headers)
    assert response.status_code == 400
    assert "binary tensor data" in response.json()["error"]
    response = http.post(INFER, content=body[:-4], headers=headers)
    assert response.status_code == 400
    assert "the body has" in response.json()["error"]


def test_gzip_bomb_is_refused(http: httpx.Client, v2_server: LiveServer) -> None:
    bomb = gzip.compress(b"\0" * (Settings().max_body_bytes + 1024))
    response = http.post(INFER, content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413  # as the same body sent uncompressed
    assert "exceeds the limit" in response.json()["error"]


def test_server_keeps_serving_and_counts_by_route_template(http: httpx.Client) -> None:
    for _ in range(3):
        http.post(INFER, content=b"garbage")
    good = http.post(INFER, json=_header(data=[0.1] * 784))
    assert good.status_code == 200
    metrics = http.get("/metrics").text
    assert 'route="/v2/models/{model_name}/infer"' in metrics
    assert 'status="400"' in metrics


def test_not_ready_before_the_model_is_loaded(v2_model: Path) -> None:
    app = create_app(Settings(model_path=v2_model, access_log=False))
    client = TestClient(app)  # no `with`: the lifespan (model load) has not run
    response = client.get("/v2/health/ready")
    assert response.status_code == 503 and response.json() == {"ready": False}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get(f"/v2/models/{MODEL_NAME}/ready").status_code == 503
    response = client.post(INFER, json=_header(data=[0.1] * 784))
    assert response.status_code == 503 and "not loaded" in response.json()["error"]


def test_overload_is_503_with_retry_after(v2_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's refusal, with the wait it names, in V2's error shape (the setting reaching
    the pool's refusals is tests/service/test_workers.py's)."""
    app = create_app(Settings(model_path=v2_model, access_log=False))
    with TestClient(app) as client:

        def full(images: np.ndarray) -> np.ndarray:
            raise Overloaded("inference queue full", 7)

        predictor = app_state(app).predictor
        assert predictor is not None
        monkeypatch.setattr(predictor.pool, "classify_tensor", full)
        response = client.post(INFER, json=_header(data=[0.1] * 784))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": "inference queue full"}


def test_the_errors_a_route_answers_are_in_its_openapi_entry(http: httpx.Client) -> None:
    """A generated client or a reader of /docs learns every status a /v2 route answers, in
    the protocol's ``{"error": "..."}`` shape."""
    paths = http.get("/openapi.json").json()["paths"]
    answered = {
        ("/v2/models/{model_name}", "get"): http.get("/v2/models/nope"),
        ("/v2/models/{model_name}/config", "get"): http.get("/v2/models/nope/config"),
        ("/v2/models/{model_name}/ready", "get"): http.get("/v2/models/nope/ready"),
        ("/v2/models/{model_name}/versions/{model_version}", "get"): http.get(
            f"/v2/models/{MODEL_NAME}/versions/99"
        ),
        ("/v2/models/{model_name}/stats", "get"): http.get("/v2/models/nope/stats"),
        ("/v2/models/{model_name}/infer", "post"): http.post(INFER, content=b"{"),
        ("/v2/repository/index", "post"): http.post("/v2/repository/index"),
    }
    for (path, method), response in answered.items():
        entry = paths[path][method]["responses"][str(response.status_code)]
        assert response.status_code >= 400 and isinstance(response.json()["error"], str)
        schema = entry["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/V2ErrorBody"}, (path, schema)
    infer = paths["/v2/models/{model_name}/versions/{model_version}/infer"]["post"]
    assert {"400", "404", "413", "415", "503"} <= set(infer["responses"])


@pytest.mark.parametrize(
    "data",
    [[True] + [0.0] * 783, [[False] * 28] + [[0.5] * 28] * 27],
    ids=["flat", "nested rows"],
)
def test_booleans_among_numbers_are_refused(http: httpx.Client, data: list) -> None:
    """numpy reads true and false as 1 and 0 beside numbers: FP32 data took them, while data
    of booleans alone was refused. Numbers only, wherever a boolean stands."""
    response = http.post(INFER, json=_header(data=data))
    assert response.status_code == 400
    assert "must hold numbers only" in response.json()["error"]


def test_a_value_just_past_the_range_is_shown_as_it_is(http: httpx.Client) -> None:
    """1.0000001 was reported as "max 1": the client could not see what broke the range."""
    response = http.post(INFER, json=_header(data=[1.0000001] + [0.0] * 783))
    assert response.status_code == 400
    assert "max 1.00000012" in response.json()["error"]


def test_a_huge_header_length_is_quoted_short(http: httpx.Client) -> None:
    headers = {"Inference-Header-Content-Length": "9" * 4000}
    response = http.post(INFER, content=b"{}", headers=headers)
    assert response.status_code == 400 and len(response.text) < 500


def test_an_error_quotes_a_huge_value_short(http: httpx.Client) -> None:
    response = http.post(INFER, json=_header(shape=[1] * 100_000, data=[0.5] * 784))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "must have shape [N, 1, 28, 28], got [1, 1, 1" in error and len(error) < 300


def _with_parameters(where: str, parameters: Any) -> dict[str, Any]:
    """An infer request of one image with ``parameters`` at the request, its input or its
    output."""
    body: dict[str, Any] = _header(data=[0.5] * 784)
    if where == "request":
        body["parameters"] = parameters
    elif where == "input":
        body["inputs"][0]["parameters"] = parameters
    else:
        body["outputs"] = [{"name": "probabilities", "parameters": parameters}]
    return body


@pytest.mark.parametrize("where", ["request", "input", "output"])
def test_null_parameters_are_none_at_all(http: httpx.Client, where: str) -> None:
    """A null "parameters" was a 400 while a null "outputs" or "id" was taken as absent."""
    response = http.post(INFER, json=_with_parameters(where, None))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("where", ["request", "input", "output"])
@pytest.mark.parametrize("value", [{"a": 1}, [1, 2]])
def test_a_parameter_must_be_a_string_number_or_boolean(
    http: httpx.Client, where: str, value: Any
) -> None:
    """The protocol's parameter values are strings, numbers and booleans (Triton answers 400
    for others): an object or a list was taken in silence."""
    custom = {"tenant": "a", "priority": 2, "trace": True, "extra": value}
    body = _with_parameters(where, custom)
    response = http.post(INFER, json=body)
    assert response.status_code == 400, response.text
    assert "'extra' must be a string, number or boolean, got an" in response.json()["error"]
    del custom["extra"]  # scalars alone are served
    assert http.post(INFER, json=body).status_code == 200


@pytest.mark.parametrize("name", ["binary_data", "classification", "shared_memory_region"])
def test_a_null_output_parameter_is_not_given(http: httpx.Client, name: str) -> None:
    """binary_data_size: null was taken as not given, binary_data: null was a 400."""
    outputs = [{"name": "probabilities", "parameters": {name: None}}]
    body = {**_header(data=[0.5] * 784), "outputs": outputs}
    body["parameters"] = {"binary_data_output": None}
    response = http.post(INFER, json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["outputs"][0]["data"]) == 10  # JSON, the probabilities


def test_a_wrong_type_is_named_as_json_names_it(http: httpx.Client) -> None:
    """The client wrote JSON: "got list" named Python's type."""
    response = http.post(INFER, json={**_header(data=[0.5] * 784), "parameters": [1]})
    assert response.status_code == 400
    assert response.json()["error"] == "request 'parameters' must be a JSON object, got an array"


def test_a_name_with_quotes_is_shown_as_sent(http: httpx.Client) -> None:
    """a"b\\c'd was shown 'a\\'b\\\\c'd': neither the name sent nor one a reader could undo."""
    response = http.get("/v2/models/a%22b%5Cc%27d")
    assert response.status_code == 404
    assert "unknown model 'a\"b\\\\c\\'d'" in response.json()["error"]


def test_the_largest_batch_is_a_setting_the_config_publishes(v2_model: Path) -> None:
    app = create_app(Settings(model_path=v2_model, access_log=False, v2_max_batch_size=4))
    with TestClient(app) as client:
        assert client.get(f"/v2/models/{MODEL_NAME}/config").json()["max_batch_size"] == 4
        assert client.post(INFER, json=_header(4, data=[0.5] * 784 * 4)).status_code == 200
        over = client.post(INFER, json=_header(5, data=[0.5] * 784 * 5))
    assert over.status_code == 400, over.text
    assert "4" in over.json()["error"]


def test_by_default_several_of_the_largest_batches_queue_together() -> None:
    """perf_analyzer -b 600 at a concurrency of 2 was refused 503 overloaded: the largest V2
    batch the config allowed was the whole inference queue."""
    settings = Settings()
    assert settings.batch_max_queue_images >= 4 * settings.resolved_v2_max_batch_size


def test_a_queue_smaller_than_the_default_batch_limits_the_batch(v2_model: Path) -> None:
    """DIGITS_BATCH_MAX_QUEUE_IMAGES=512 was a valid setting before the batch limit was one of
    its own: it must still start, and take batches up to the queue."""
    settings = Settings(model_path=v2_model, access_log=False, batch_max_queue_images=512)
    with TestClient(create_app(settings)) as client:
        assert client.get(f"/v2/models/{MODEL_NAME}/config").json()["max_batch_size"] == 512


def test_two_header_lengths_are_refused(http: httpx.Client) -> None:
    """Two Inference-Header-Content-Length headers: the first was used in silence, where two
    Content-Lengths are refused (which of them ends the JSON is anybody's guess)."""
    body, headers = _binary(np.zeros((1, 1, 28, 28), dtype=np.float32))
    (length,) = headers.values()
    response = http.post(
        INFER,
        content=body,
        headers=[("Inference-Header-Content-Length", length)] * 2,
    )
    assert response.status_code == 400
    assert "sent 2 times" in response.json()["error"]
    assert http.post(INFER, content=body, headers=headers).status_code == 200
