"""POST /predict and /predict/batch: find the image bytes in the request, ask the Predictor.

The handlers are direct ones (service/http/fast_routes.py): the app answers these paths
before its routing. The FastAPI declarations below give /docs and the OpenAPI document the
same routes, served by the same handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter

from service.http.fast_routes import DirectRequest, FastRoutes
from service.http.schemas import (
    BatchPrediction,
    ErrorBody,
    ImagePayload,
    Prediction,
    RefusalBody,
)
from service.http.uploads import (
    BATCH_FIELD,
    EXPLAIN_PARAM,
    INCLUDE_IMAGE_PARAM,
    SINGLE_FIELD,
    batch_uploads,
    query_flags,
    single_upload,
)
from service.predictor import Predictor

_INCLUDE_IMAGE_PARAMETER = {
    "name": INCLUDE_IMAGE_PARAM,
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False, "title": "Include Image"},
    "description": "Also return the 28x28 image the model saw, as a base64 PNG.",
}
_EXPLAIN_PARAMETER = {
    "name": EXPLAIN_PARAM,
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False, "title": "Explain"},
    "description": "Also return why: the saliency map of the predicted digit (28x28 values, "
    "occlusion) and a base64 PNG of it over the image the model saw. Costs about 200 more "
    "model runs per image.",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": RefusalBody if status == 422 else ErrorBody, "description": text}
    for status, text in {
        400: "Undecodable image (`invalid_image`) or malformed request (`bad_request`)",
        413: "Body over the limit (`payload_too_large`) or too many pixels (`image_too_large`)",
        415: "Unsupported content type or image format (`unsupported_media_type`)",
        422: "Invalid parameters (`validation_error`), a blank image (`no_ink`) or an image "
        "that is not a digit (`not_a_digit`)",
        503: "Queue full (`overloaded`, with Retry-After) or model not ready (`not_ready`)",
    }.items()
}
_BINARY = {"type": "string", "format": "binary"}


def _request_body(
    field: str, schema: dict[str, Any], others: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A prediction route's ``openapi_extra``: its query flags, and a body that is multipart
    with ``field`` (or one of the ``others`` media types)."""
    multipart = {"schema": {"type": "object", "properties": {field: schema}, "required": [field]}}
    return {
        "parameters": [_INCLUDE_IMAGE_PARAMETER, _EXPLAIN_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": multipart, **(others or {})},
        },
    }


_SINGLE_BODY = _request_body(
    SINGLE_FIELD,
    _BINARY,
    {
        "image/*": {"schema": _BINARY},
        # What a client generator sends raw bytes as (most take no "image/*" media type).
        "application/octet-stream": {"schema": _BINARY},
        "application/json": {"schema": ImagePayload.model_json_schema()},
    },
)


def _batch_body(max_files: int) -> dict[str, Any]:
    files = {"type": "array", "items": _BINARY, "minItems": 1, "maxItems": max_files}
    return _request_body(BATCH_FIELD, files)


def prediction_router(
    fast: FastRoutes, predictor_of: Callable[[], Predictor], max_batch_files: int
) -> APIRouter:
    """Register the two direct handlers on ``fast``; their declarations for FastAPI.
    ``predictor_of`` raises NotReady until the workers have opened the model."""

    async def predict(request: DirectRequest) -> bytes:
        predictor, (with_image, explain) = predictor_of(), query_flags(request.query_string)
        upload = single_upload(request.content_type, await request.body())
        answer = await predictor.predict(upload, with_image, explain, request.request_id)
        return orjson.dumps(answer)

    async def predict_batch(request: DirectRequest) -> bytes:
        predictor, (with_image, explain) = predictor_of(), query_flags(request.query_string)
        uploads = batch_uploads(request.content_type, await request.body(), max_batch_files)
        answers = await predictor.predict_batch(uploads, with_image, explain, request.request_id)
        return orjson.dumps({"predictions": answers})

    router = APIRouter(tags=["predict"])
    for path, handler, model, body, summary, description in (
        (
            "/predict",
            predict,
            Prediction,
            _SINGLE_BODY,
            "Read the digit in one image",
            "One image as multipart `file`, a raw `image/*` (or `application/octet-stream`) "
            'body, or JSON `{"image": base64}`.',
        ),
        (
            "/predict/batch",
            predict_batch,
            BatchPrediction,
            _batch_body(max_batch_files),
            "Read the digits in several images",
            "Multipart with repeated `files`; one answer per file, in order, errors per entry.",
        ),
    ):
        fast.add("POST", path, handler)
        router.add_api_route(
            path,
            fast.endpoint(handler),
            methods=["POST"],
            name=handler.__name__,
            response_model=model,
            responses=_ERRORS,
            openapi_extra=body,
            summary=summary,
            description=description,
        )
    return router
