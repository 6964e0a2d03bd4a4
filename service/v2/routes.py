"""KServe V2 / Open Inference Protocol REST routes (health, metadata, config, infer).

The routes only move bytes: :mod:`service.v2.codec` reads and writes the wire format, the
app's worker pool batches and runs the model. Handlers take the raw ``Request`` and return
``Response`` objects directly: no pydantic models or ``jsonable_encoder`` on the inference
path, where the HTTP handling, not the model, sets the price (SERVING-FACTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.errors import ServiceError
from service.v2.codec import (
    FP32,
    InferRequest,
    TensorSignature,
    decode_body,
    encode_infer_response,
    parse_infer_request,
)
from service.v2.errors import V2Error

SERVER_NAME = "digits"
# Extensions a client may rely on (names as Triton reports them in GET /v2).
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]
PLATFORM = "onnxruntime_onnx"


def _package_version() -> str:
    try:
        return version("digits")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


SERVER_VERSION = _package_version()
# JSON bodies above this are parsed in a worker thread so one big request cannot stall the
# event loop for every other connection (json.loads of 1 MB takes ~10 ms).
_INLINE_JSON_BYTES = 64 * 1024

router = APIRouter(prefix="/v2", tags=["KServe V2"])


@dataclass(frozen=True)
class ServedModel:
    """The V2 view of the loaded model, built once from its metadata."""

    name: str
    version: str
    input: TensorSignature
    output: TensorSignature
    labels: list[str]
    max_batch_size: int
    max_queue_delay_us: int


def _served_model(request: Request) -> ServedModel:
    state = request.app.state
    model: ServedModel | None = getattr(state, "v2_model", None)
    if model is None:
        info, settings = state.classifier.info, state.settings
        model = ServedModel(
            name=info.name,
            version=info.version,
            input=TensorSignature(info.input_name, tuple(int(d) for d in info.input_shape[1:])),
            output=TensorSignature(info.output_name, tuple(int(d) for d in info.output_shape[1:])),
            labels=list(info.labels),
            # A request bigger than the whole inference queue could never be admitted.
            max_batch_size=settings.batch_max_queue_images,
            max_queue_delay_us=settings.batch_max_delay_us,
        )
        state.v2_model = model
    return model


def _is_ready(request: Request) -> bool:
    return getattr(request.app.state, "classifier", None) is not None and bool(
        getattr(request.app.state, "ready", False)
    )


def _model_for(request: Request, model_name: str, model_version: str | None = None) -> ServedModel:
    if not _is_ready(request):
        raise V2Error("model is not loaded yet", status_code=503)
    model = _served_model(request)
    if model_name != model.name:
        raise V2Error(f"unknown model '{model_name}'; this server serves '{model.name}'", 404)
    if model_version is not None and model_version != model.version:
        raise V2Error(
            f"unknown version '{model_version}' of model '{model.name}'; "
            f"available: '{model.version}'",
            404,
        )
    return model


def _tensor_metadata(tensor: TensorSignature) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": FP32, "shape": tensor.shape}


@router.get("", summary="Server metadata")
async def server_metadata() -> JSONResponse:
    return JSONResponse({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})


@router.get("/health/live", summary="Server liveness")
async def server_live() -> JSONResponse:
    return JSONResponse({"live": True})


@router.get("/health/ready", summary="Server readiness (503 until the model is warmed up)")
async def server_ready(request: Request) -> JSONResponse:
    ready = _is_ready(request)
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def _model_metadata(request: Request, model_name: str, version: str | None) -> Response:
    try:
        model = _model_for(request, model_name, version)
    except V2Error as exc:
        return exc.response()
    return JSONResponse(
        {
            "name": model.name,
            "versions": [model.version],
            "platform": PLATFORM,
            "inputs": [_tensor_metadata(model.input)],
            "outputs": [_tensor_metadata(model.output)],
        }
    )


async def _model_ready(request: Request, model_name: str, version: str | None) -> Response:
    try:
        model = _model_for(request, model_name, version)
    except V2Error as exc:
        if exc.status_code == 503:
            return JSONResponse({"name": model_name, "ready": False}, status_code=503)
        return exc.response()
    return JSONResponse({"name": model.name, "ready": True})


async def _model_config(request: Request, model_name: str, version: str | None) -> Response:
    """Triton's model-config JSON: perf_analyzer stops without it."""
    try:
        model = _model_for(request, model_name, version)
    except V2Error as exc:
        return exc.response()
    return JSONResponse(
        {
            "name": model.name,
            "platform": PLATFORM,
            "backend": "onnxruntime",
            "max_batch_size": model.max_batch_size,
            "input": [
                {
                    "name": model.input.name,
                    "data_type": f"TYPE_{FP32}",
                    "format": "FORMAT_NONE",
                    "dims": list(model.input.item_shape),
                }
            ],
            "output": [
                {
                    "name": model.output.name,
                    "data_type": f"TYPE_{FP32}",
                    "dims": list(model.output.item_shape),
                }
            ],
            "dynamic_batching": {"max_queue_delay_microseconds": model.max_queue_delay_us},
            "version_policy": {"specific": {"versions": [model.version]}},
        }
    )


async def _infer(request: Request, model_name: str, version: str | None) -> Response:
    try:
        model = _model_for(request, model_name, version)
        parsed = await _read_request(request, model)
        probabilities = await request.app.state.predictor.probabilities(parsed.images)
    except V2Error as exc:
        return exc.response()
    except ServiceError as exc:
        # Overloaded (503 + Retry-After) and friends, in the protocol's error shape.
        return V2Error(exc.message, exc.status_code).response(exc.headers)
    body, header_length = encode_infer_response(
        model_name=model.name,
        model_version=model.version,
        request=parsed,
        results={model.output.name: probabilities},
        labels=model.labels,
    )
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )


async def _read_request(request: Request, model: ServedModel) -> InferRequest:
    headers = request.headers
    body = decode_body(
        await request.body(),
        headers.get("content-encoding"),
        request.app.state.settings.max_body_bytes,
    )
    arguments: dict[str, Any] = {
        "header_length": headers.get("inference-header-content-length"),
        "content_type": headers.get("content-type"),
        "model_input": model.input,
        "model_outputs": [model.output],
        "max_batch_size": model.max_batch_size,
    }
    if arguments["header_length"] is None and len(body) > _INLINE_JSON_BYTES:
        return await run_in_threadpool(parse_infer_request, body, **arguments)
    return parse_infer_request(body, **arguments)


def _register(path: str, method: str, endpoint: Any, summary: str) -> None:
    """The same handler under /models/{name} and /models/{name}/versions/{version}."""

    async def unversioned(request: Request, model_name: str) -> Response:
        return await endpoint(request, model_name, None)

    async def versioned(request: Request, model_name: str, model_version: str) -> Response:
        return await endpoint(request, model_name, model_version)

    for route_path, handler in (
        (f"/models/{{model_name}}{path}", unversioned),
        (f"/models/{{model_name}}/versions/{{model_version}}{path}", versioned),
    ):
        router.add_api_route(
            route_path,
            handler,
            methods=[method],
            summary=summary,
            response_class=Response,
            name=f"v2{route_path}",
        )


_register("", "GET", _model_metadata, "Model metadata")
_register("/ready", "GET", _model_ready, "Model readiness")
_register("/config", "GET", _model_config, "Model configuration (Triton model-config JSON)")
_register("/infer", "POST", _infer, "Inference: JSON tensors or the binary tensor data extension")
