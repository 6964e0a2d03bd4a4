"""POST /predict and /predict/batch: find the image bytes in the request, ask the Predictor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.http.responses import FastJSONResponse
from service.http.schemas import BatchPrediction, ErrorBody, ImagePayload, Prediction
from service.http.state import predictor_of, state_of
from service.http.uploads import (
    BATCH_FIELD,
    INCLUDE_IMAGE,
    SINGLE_FIELD,
    batch_uploads,
    include_image,
    single_upload,
)

router = APIRouter(tags=["predict"])

_INCLUDE_IMAGE_PARAMETER = {
    "name": INCLUDE_IMAGE,
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False, "title": "Include Image"},
    "description": "Also return the 28x28 image the model saw, as a base64 PNG.",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Undecodable image (`invalid_image`) or malformed request (`bad_request`)",
        413: "Body over the limit (`payload_too_large`) or too many pixels (`image_too_large`)",
        415: "Unsupported content type or image format (`unsupported_media_type`)",
        422: "Invalid parameters (`validation_error`) or a blank image (`no_ink`)",
        503: "Queue full (`overloaded`, with Retry-After) or model not ready (`not_ready`)",
    }.items()
}
_BINARY = {"type": "string", "format": "binary"}
# The bodies and the flag are read by service.http.uploads, not declared as parameters, so
# OpenAPI learns of them here.
_SINGLE_BODY = {
    "parameters": [_INCLUDE_IMAGE_PARAMETER],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {SINGLE_FIELD: _BINARY},
                    "required": [SINGLE_FIELD],
                }
            },
            "image/*": {"schema": _BINARY},
            "application/json": {"schema": ImagePayload.model_json_schema()},
        },
    },
}
_BATCH_BODY = {
    "parameters": [_INCLUDE_IMAGE_PARAMETER],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {BATCH_FIELD: {"type": "array", "items": _BINARY}},
                    "required": [BATCH_FIELD],
                }
            }
        },
    },
}


@router.post(
    "/predict",
    response_model=Prediction,
    responses=_ERRORS,
    openapi_extra=_SINGLE_BODY,
    summary="Read the digit in one image",
)
async def predict(request: Request) -> FastJSONResponse:
    """One image as multipart `file`, a raw `image/*` body, or JSON `{"image": base64}`."""
    predictor, with_image = predictor_of(request), include_image(request)
    upload = await single_upload(request)
    return FastJSONResponse(await predictor.predict(upload, with_image))


@router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    responses=_ERRORS,
    openapi_extra=_BATCH_BODY,
    summary="Read the digits in several images",
)
async def predict_batch(request: Request) -> FastJSONResponse:
    """Multipart with repeated `files`; one answer per file, in order, errors per entry."""
    predictor, with_image = predictor_of(request), include_image(request)
    uploads = await batch_uploads(request, state_of(request).settings.max_batch_files)
    entries = await predictor.predict_batch(uploads, with_image)
    return FastJSONResponse({"predictions": entries})
