"""POST /predict and /predict/batch: find the image bytes in the request, ask the Predictor."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import TypeAdapter, ValidationError

from service.errors import BadRequest, UnsupportedMediaType, ValidationFailed
from service.predictor import Upload
from service.routes.multipart import boundary_of, read_files
from service.routes.responses import FastJSONResponse
from service.routes.state import predictor_of
from service.schemas import BatchPrediction, ErrorBody, ImagePayload, Prediction

router = APIRouter(tags=["predict"])

RAW_TYPES = ("image/", "application/octet-stream")
ACCEPTED = "multipart/form-data (field 'file'), image/* or application/json {\"image\": base64}"
INCLUDE_IMAGE = "include_image"
_INCLUDE_IMAGE_PARAMETER = {
    "name": INCLUDE_IMAGE,
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False, "title": "Include Image"},
    "description": "Also return the 28x28 image the model saw, as a base64 PNG.",
}
_FLAG = TypeAdapter(bool)
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
_SINGLE_BODY = {
    "parameters": [_INCLUDE_IMAGE_PARAMETER],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}
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
                    "properties": {"files": {"type": "array", "items": _BINARY}},
                    "required": ["files"],
                }
            }
        },
    },
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _include_image(request: Request) -> bool:
    """The ``include_image`` query flag, by pydantic's rules for booleans ("true", "1",
    "yes", ...; anything else is a 422).

    Read here rather than declared as a FastAPI query parameter: FastAPI's parameter
    solving cost 11 us of event-loop time per request (bare ASGI calls of a route, with and
    without it), and the event loop's time per request is what bounds /predict. The
    parameter is documented through ``openapi_extra``.
    """
    if not request.scope["query_string"]:
        return False
    value = request.query_params.get(INCLUDE_IMAGE)
    if value is None:
        return False
    try:
        return _FLAG.validate_python(value)
    except ValidationError as exc:
        raise ValidationFailed(f"query.{INCLUDE_IMAGE}: {exc.errors()[0]['msg']}") from exc


def _from_base64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValidationFailed(f"field 'image' must be a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(f"field 'image' is not valid base64: {exc}") from exc


async def _json_image(request: Request) -> bytes:
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or "image" not in payload:
        raise ValidationFailed('JSON body must be an object {"image": "<base64>"}')
    extra = sorted(set(payload) - {"image"})
    if extra:
        raise ValidationFailed(f"unexpected JSON field(s) {extra}; only 'image' is accepted")
    return _from_base64(payload["image"])


async def _form_files(request: Request, field: str, max_files: int) -> list[Upload]:
    boundary = boundary_of(request.headers.get("content-type", ""))
    files = read_files(await request.body(), boundary, field, max_files)
    return [Upload(file.data, file.filename) for file in files]


async def _single_upload(request: Request) -> Upload:
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        (upload,) = await _form_files(request, "file", max_files=1)
        return upload
    if media_type == "application/json":
        return Upload(await _json_image(request))
    if media_type.startswith(RAW_TYPES) and media_type != "image/svg+xml":
        return Upload(await request.body())
    raise UnsupportedMediaType(
        f"content type '{media_type or '(none)'}' is not accepted; send {ACCEPTED}"
    )


@router.post(
    "/predict",
    response_model=Prediction,
    responses=_ERRORS,
    openapi_extra=_SINGLE_BODY,
    summary="Read the digit in one image",
)
async def predict(request: Request) -> FastJSONResponse:
    """One image as multipart `file`, a raw `image/*` body, or JSON `{"image": base64}`."""
    predictor, include_image = predictor_of(request), _include_image(request)
    upload = await _single_upload(request)
    return FastJSONResponse(await predictor.predict(upload, include_image))


@router.post(
    "/predict/batch",
    response_model=BatchPrediction,
    responses=_ERRORS,
    openapi_extra=_BATCH_BODY,
    summary="Read the digits in several images",
)
async def predict_batch(request: Request) -> FastJSONResponse:
    """Multipart with repeated `files`; one answer per file, in order, errors per entry."""
    predictor, include_image = predictor_of(request), _include_image(request)
    if _media_type(request) != "multipart/form-data":
        raise UnsupportedMediaType(
            f"content type '{_media_type(request) or '(none)'}' is not accepted; "
            "send multipart/form-data with repeated field 'files'"
        )
    limit = request.app.state.settings.max_batch_files
    uploads = await _form_files(request, "files", max_files=limit)
    entries = await predictor.predict_batch(uploads, include_image)
    return FastJSONResponse({"predictions": entries})
