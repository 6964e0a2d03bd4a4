"""What /openapi.json says of the V2 routes beyond FastAPI's defaults, for clients generated
from it: the shapes of an infer request and its answer (the Open Inference Protocol, in JSON
or with the binary tensor data extension), of the model metadata, of the repository's
bodies, and the admin token those need. The handlers read their bodies themselves
(service/http/v2/infer_request.py), so these models document only; tests/v2/test_openapi.py
checks real requests and answers against them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.http.v2.errors import is_v2_path

ADMIN_SCHEME = "adminToken"
_COMPONENTS = "#/components/schemas/{model}"


class Tensor(BaseModel):
    """A tensor in JSON: ``data`` flat in row-major order (or nested), or, with the binary
    extension, ``parameters.binary_data_size`` bytes after the JSON."""

    name: str = Field(examples=["image"])
    shape: list[int] = Field(examples=[[1, 1, 28, 28]])
    datatype: str = Field(description="FP32 for this model's tensors.", examples=["FP32"])
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: the tensor's bytes after the JSON header."
    )
    data: list[Any] | None = Field(None, description="The values; absent with binary data.")


class RequestedOutput(BaseModel):
    name: str = Field(examples=["probabilities"])
    parameters: dict[str, Any] | None = Field(
        None,
        description="binary_data (bool): the values as bytes after the JSON; classification "
        "(int): the top k classes as 'score:index:label' strings instead of the values.",
    )


class InferenceRequest(BaseModel):
    """POST .../infer in JSON (Content-Type application/json). With the binary tensor data
    extension the body is this JSON, then the tensors' bytes, and the header
    Inference-Header-Content-Length gives the JSON's length."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[Tensor] = Field(min_length=1, max_length=1, description="The image tensor.")
    outputs: list[RequestedOutput] | None = Field(None, description="All outputs when absent.")


class InferenceResponse(BaseModel):
    """The answer in JSON; with binary outputs asked for, this JSON then the tensors' bytes
    (application/octet-stream, Inference-Header-Content-Length giving the JSON's length)."""

    model_name: str
    model_version: str | None = None
    id: str | None = Field(None, description="The request's id, when it gave one.")
    parameters: dict[str, Any] | None = None
    outputs: list[Tensor]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size (the batch).")


class ModelMetadata(BaseModel):
    """GET /v2/models/{name}: ``parameters`` names the model's own version and its file's
    sha256 (``versions`` has only the major) and publishes the not-a-digit rule that
    /predict applies, for tensor clients that want it too."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class ModelReadiness(BaseModel):
    """GET /v2/models/{name}/ready: 200 when ready, 503 with ``ready`` false while not."""

    name: str
    ready: bool


class ModelConfig(BaseModel):
    """GET /v2/models/{name}/config: Triton's model configuration, as perf_analyzer reads it
    (the fields this server fills; Triton's own document has many more)."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any] | None = None
    version_policy: dict[str, Any] | None = None


class LoadRequest(BaseModel):
    """POST /v2/repository/models/{name}/load: no body reloads DIGITS_MODEL_PATH; a file is
    parameters["file:<version>/model.onnx"] in base64, with Triton's optional ``config``."""

    parameters: dict[str, Any] | None = None


class IndexRequest(BaseModel):
    ready: bool | None = Field(None, description="Only the models that are (not) ready.")


DOCUMENTED = (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReadiness,
    ModelConfig,
    LoadRequest,
    IndexRequest,
)


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"schema": {"$ref": _COMPONENTS.format(model=model.__name__)}}


_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}

# The binary extension's body (JSON, then bytes, and a header saying where the JSON ends) is
# left out of requestBody: generators cannot build it, and a second body type there made
# openapi-python-client 0.29 write a function that does not import.
INFER: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": _json(InferenceRequest)}},
    "responses": {
        "200": {
            "description": "The outputs: JSON, or JSON then binary tensors",
            "content": {
                "application/json": _json(InferenceResponse),
                "application/octet-stream": _BINARY,
            },
        }
    },
}
READY: dict[str, Any] = {
    "responses": {
        status: {"description": meaning, "content": {"application/json": _json(ModelReadiness)}}
        for status, meaning in (("200", "Ready"), ("503", "Not ready"))
    }
}
CONFIG: dict[str, Any] = {
    "responses": {"200": {"content": {"application/json": _json(ModelConfig)}}}
}
METADATA: dict[str, Any] = {
    "responses": {"200": {"content": {"application/json": _json(ModelMetadata)}}}
}
ADMIN: dict[str, Any] = {"security": [{ADMIN_SCHEME: []}]}
LOAD: dict[str, Any] = {
    **ADMIN,
    "requestBody": {"required": False, "content": {"application/json": _json(LoadRequest)}},
}
INDEX: dict[str, Any] = {
    **ADMIN,
    "requestBody": {"required": False, "content": {"application/json": _json(IndexRequest)}},
}


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document with the models above in its components, the admin token's scheme,
    and no 422 on the V2 routes (FastAPI adds one to any route with path parameters, in its
    own shape; a V2 route answers 400 in the protocol's)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in DOCUMENTED:
        schema = model.model_json_schema(ref_template=_COMPONENTS)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    spec["components"]["securitySchemes"] = {
        ADMIN_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "DIGITS_ADMIN_TOKEN, for the model repository's routes",
        }
    }
    for path, operations in spec.get("paths", {}).items():
        if is_v2_path(path):
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
    return spec
