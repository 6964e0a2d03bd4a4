"""KServe V2 / Open Inference Protocol REST routes (health, metadata, config, infer).

The routes only move bytes: infer_request.py and infer_response.py read and write the wire
format, the predictor's worker pool batches and runs the model. Handlers take the raw
``Request`` and return ``Response`` objects directly: no pydantic models or
``jsonable_encoder`` on the inference path, where the HTTP handling sets the price.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.contract import v2_version
from service.errors import quoted
from service.http.json_body import INLINE_JSON_BYTES
from service.http.state import state_of
from service.http.v2 import metadata, openapi
from service.http.v2.encoding import (
    INLINE_COMPRESSION_BYTES,
    accepted_coding,
    decode_body,
    encode_body,
)
from service.http.v2.errors import V2Error, documented, unknown_model
from service.http.v2.infer_request import HEADER_LENGTH, InferRequest
from service.http.v2.infer_request import parse_infer_request as parse
from service.http.v2.infer_response import encode_infer_response
from service.http.v2.metadata import ServedModel

router = APIRouter(prefix="/v2", tags=["KServe V2"])
# A model's routes, under both forms (_register).
_MODEL_PATHS = ("/models/{model_name}", "/models/{model_name}/versions/{model_version}")
# The inference routes as the request metrics name them (service/app.py expects their 5xx).
INFER_ROUTES = tuple(f"{router.prefix}{model}/infer" for model in _MODEL_PATHS)


def _model_for(request: Request, model_name: str, model_version: str | None = None) -> ServedModel:
    state = state_of(request)
    model = state.v2_model
    if model is None or not state.ready:
        raise V2Error("model is not loaded yet", status_code=503)
    if model_name != model.name:
        raise unknown_model(model_name, model.name)
    if model_version is not None and not metadata.names_version(model, model_version):
        raise V2Error(
            f"unknown version {quoted(model_version)} of model '{model.name}'; "
            f"available: '{model.version}' (model version '{model.model_version}')",
            404,
        )
    return model


@router.get("", summary="Server metadata")
async def server_metadata(request: Request) -> JSONResponse:
    repository = state_of(request).settings.admin_token is not None
    return JSONResponse(metadata.server_metadata(repository))


@router.get("/health/live", summary="Server liveness")
async def server_live() -> JSONResponse:
    return JSONResponse({"live": True})


@router.get(
    "/health/ready",
    summary="Server readiness (503 until the model is warmed up)",
    responses={503: {"description": 'Not ready: `{"ready": false}`'}},
)
async def server_ready(request: Request) -> JSONResponse:
    ready = state_of(request).serving()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def _model_metadata(request: Request, model_name: str, version: str | None) -> Response:
    try:
        return JSONResponse(metadata.model_metadata(_model_for(request, model_name, version)))
    except V2Error as exc:
        return exc.response()


async def _model_ready(request: Request, model_name: str, version: str | None) -> Response:
    try:
        model = _model_for(request, model_name, version)
    except V2Error as exc:
        if exc.status_code == 503:
            return JSONResponse({"name": model_name, "ready": False}, status_code=503)
        return exc.response()
    if not state_of(request).serving():
        return JSONResponse({"name": model.name, "ready": False}, status_code=503)
    return JSONResponse({"name": model.name, "ready": True})


async def _model_config(request: Request, model_name: str, version: str | None) -> Response:
    try:
        return JSONResponse(metadata.model_config(_model_for(request, model_name, version)))
    except V2Error as exc:
        return exc.response()


async def _infer(request: Request, model_name: str, version: str | None) -> Response:
    state = state_of(request)
    try:
        model = _model_for(request, model_name, version)
        parsed = await _read_request(request, model, state.settings.max_body_bytes)
        assert state.predictor is not None  # _model_for checked readiness
        result = await state.predictor.probabilities(parsed.images)
    except V2Error as exc:
        return exc.response()
    # A ServiceError (Overloaded, 503 + Retry-After, and friends) goes to the app's handler,
    # which answers it in the protocol's shape on a /v2 path (service/http/v2/errors.py).
    source = result.model  # the model that computed it: a reload may have switched meanwhile
    body, header_length = encode_infer_response(
        model_name=source.name if source else model.name,
        model_version=v2_version(source.version) if source else model.version,
        release=source.version if source else model.model_version,
        request=parsed,
        results={model.output.name: result.probabilities},
        labels=model.labels,
    )
    return await _answer(body, header_length, request.headers.get("accept-encoding"))


async def _answer(body: bytes, header_length: int | None, accept_encoding: str | None) -> Response:
    """The inference answer, compressed when the client asks (tritonclient's
    ``response_compression_algorithm``); a large one is compressed off the event loop."""
    # Plain answers vary on Accept-Encoding too (RFC 9110 12.5.5): a cache must not hand a
    # plain one to a client that asked for gzip, nor the reverse.
    headers = {"Vary": "Accept-Encoding"}
    if header_length is not None:  # it counts the JSON header before any compression
        headers[HEADER_LENGTH] = str(header_length)
    coding = accepted_coding(accept_encoding)
    if coding is not None and len(body) > INLINE_COMPRESSION_BYTES:
        body, coding = await run_in_threadpool(encode_body, body, coding)
    else:
        body, coding = encode_body(body, coding)
    if coding is not None:
        headers["Content-Encoding"] = coding
    media_type = "application/json" if header_length is None else "application/octet-stream"
    return Response(body, media_type=media_type, headers=headers)


async def _read_request(request: Request, model: ServedModel, max_bytes: int) -> InferRequest:
    headers = request.headers
    lengths = headers.getlist(HEADER_LENGTH)
    if len(lengths) > 1:  # which one ends the JSON? As with two Content-Lengths: neither
        raise V2Error(f"{HEADER_LENGTH} is sent {len(lengths)} times: send it once")
    body = decode_body(await request.body(), headers.get("content-encoding"), max_bytes)
    arguments: dict[str, Any] = {
        "header_length": lengths[0] if lengths else None,
        "content_type": headers.get("content-type"),
        "model_input": model.input,
        "model_outputs": [model.output],
        "max_batch_size": model.max_batch_size,
    }
    if arguments["header_length"] is None and len(body) > INLINE_JSON_BYTES:
        return await run_in_threadpool(parse, body, **arguments)
    return parse(body, **arguments)


def _register(
    path: str,
    method: str,
    endpoint: Any,
    summary: str,
    errors: tuple[int, ...],
    documents: dict[str, Any] | None = None,
) -> None:
    """The same handler under /models/{name} and /models/{name}/versions/{version};
    ``documents``: what the OpenAPI document says of its body and answer (v2/openapi.py)."""

    async def unversioned(request: Request, model_name: str) -> Response:
        return await endpoint(request, model_name, None)

    async def versioned(request: Request, model_name: str, model_version: str) -> Response:
        return await endpoint(request, model_name, model_version)

    unversioned_path, versioned_path = _MODEL_PATHS
    for route_path, handler in (
        (f"{unversioned_path}{path}", unversioned),
        (f"{versioned_path}{path}", versioned),
    ):
        router.add_api_route(
            route_path,
            handler,
            methods=[method],
            summary=summary,
            response_class=Response,
            responses=documented(*errors),
            name=f"v2{route_path}",
            openapi_extra=documents,
        )


_register("", "GET", _model_metadata, "Model metadata", (404, 503), openapi.METADATA)
_register("/ready", "GET", _model_ready, "Model readiness", (404,), openapi.READY)
_register(
    "/config",
    "GET",
    _model_config,
    "Model configuration (Triton model-config JSON)",
    (404, 503),
    openapi.CONFIG,
)
_register(
    "/infer",
    "POST",
    _infer,
    "Inference: JSON tensors or the binary tensor data extension",
    (400, 404, 413, 415, 503),
    openapi.INFER,
)
