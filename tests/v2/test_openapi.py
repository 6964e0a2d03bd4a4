"""/openapi.json describes the V2 routes as they answer, for clients generated from it: a
Schemathesis and openapi-python-client probe found the infer routes with no request body and
an empty 200, the repository with no body and no token, and a 422 no V2 route sends."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from tests.v2.conftest import MODEL_NAME

INFER = f"/v2/models/{MODEL_NAME}/infer"


@pytest.fixture(scope="module")
def spec(v2_server: Any) -> dict[str, Any]:
    return httpx.get(f"{v2_server.base_url}/openapi.json", timeout=30).json()


def _valid(spec: dict[str, Any], component: str, document: Any) -> list[str]:
    """What is wrong with ``document`` as the named component schema says (none: [])."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    return [error.message for error in Draft202012Validator(schema).iter_errors(document)]


def _operation(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return spec["paths"][path][method]


def test_an_infer_request_and_its_answer_match_the_documented_shapes(
    http: httpx.Client, spec: dict[str, Any]
) -> None:
    request = {
        "id": "r-1",
        "inputs": [
            {"name": "image", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": [0.5] * 1568}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
    }
    assert _valid(spec, "InferenceRequest", request) == []
    answer = http.post(INFER, json=request)
    assert answer.status_code == 200, answer.text
    assert _valid(spec, "InferenceResponse", answer.json()) == []
    operation = _operation(spec, "/v2/models/{model_name}/infer", "post")
    assert set(operation["requestBody"]["content"]) == {"application/json"}
    assert "application/json" in operation["responses"]["200"]["content"]
    metadata = http.get(f"/v2/models/{MODEL_NAME}").json()
    assert _valid(spec, "ModelMetadata", metadata) == []
    # /ready and /config answered JSON that the document said nothing of (a re-probe).
    for path, component in (("/ready", "ModelReadiness"), ("/config", "ModelConfig")):
        answer = http.get(f"/v2/models/{MODEL_NAME}{path}")
        assert answer.status_code == 200 and _valid(spec, component, answer.json()) == []
        documented = _operation(spec, "/v2/models/{model_name}" + path, "get")
        assert "application/json" in documented["responses"]["200"]["content"]


def test_no_v2_route_documents_fastapis_422(spec: dict[str, Any]) -> None:
    """A V2 route refuses in the protocol's 400 {"error": "..."}; FastAPI's 422 with
    {"detail": [...]} gave generated clients a parser for an answer never sent."""
    v2 = {path: operations for path, operations in spec["paths"].items() if path.startswith("/v2")}
    assert len(v2) >= 10
    assert not [
        (path, method)
        for path, operations in v2.items()
        for method, operation in operations.items()
        if "422" in operation["responses"]
    ]


def test_the_repository_routes_document_their_token_and_bodies(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["adminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    load = _operation(spec, "/v2/repository/models/{model_name}/load", "post")
    index = _operation(spec, "/v2/repository/index", "post")
    unload = _operation(spec, "/v2/repository/models/{model_name}/unload", "post")
    for operation in (load, index, unload):
        assert operation["security"] == [{"adminToken": []}]
        assert "401" in operation["responses"] and "413" in operation["responses"]
    upload = {"parameters": {"file:1/model.onnx": base64.b64encode(b"onnx").decode()}}
    assert _valid(spec, "LoadRequest", upload) == []
    assert _valid(spec, "LoadRequest", {"parameters": ["file:1/model.onnx"]}) != []
    assert _valid(spec, "IndexRequest", {"ready": True}) == []
    assert _valid(spec, "IndexRequest", {"ready": "yes"}) != []
    assert "application/json" in load["requestBody"]["content"]


def test_predict_documents_raw_bytes_as_generators_send_them(
    http: httpx.Client, spec: dict[str, Any]
) -> None:
    """Generators skip an "image/*" body; application/octet-stream, which the route reads,
    was not in the document."""
    body = _operation(spec, "/predict", "post")["requestBody"]["content"]
    assert "application/octet-stream" in body
    (example,) = body["application/json"]["schema"]["properties"]["image"]["examples"]
    image = base64.b64decode(example, validate=True)  # whole: it ended in "..."
    raw = http.post("/predict", content=image, headers={"Content-Type": "application/octet-stream"})
    as_json = http.post("/predict", json={"image": example})
    assert raw.status_code == as_json.status_code == 200, (raw.text, as_json.text)
    assert np.allclose(raw.json()["probabilities"], as_json.json()["probabilities"])
    feedback = _operation(spec, "/feedback", "post")
    assert "413" in feedback["responses"]


def test_every_answer_documents_its_request_id_and_a_full_queue_its_retry_after(
    http: httpx.Client, spec: dict[str, Any]
) -> None:
    """The document named no response header: a generated client could not learn of the
    X-Request-ID that POST /feedback asks for, or of Retry-After on a 503."""
    responses = [
        (status, response)
        for operations in spec["paths"].values()
        for operation in operations.values()
        for status, response in operation["responses"].items()
    ]
    assert responses and all("X-Request-ID" in response["headers"] for _, response in responses)
    unavailable = [response for status, response in responses if status == "503"]
    assert unavailable and all("Retry-After" in response["headers"] for response in unavailable)
    pattern = _operation(spec, "/predict", "post")["responses"]["200"]["headers"]["X-Request-ID"]
    answered = http.get("/healthz", headers={"X-Request-ID": "client-id.1"})
    assert answered.headers["X-Request-ID"] == "client-id.1"
    assert re.fullmatch(pattern["schema"]["pattern"].strip("^$"), "client-id.1")
    new_id = http.get("/healthz", headers={"X-Request-ID": "not sane!"}).headers["X-Request-ID"]
    assert new_id != "not sane!" and re.fullmatch(pattern["schema"]["pattern"].strip("^$"), new_id)
