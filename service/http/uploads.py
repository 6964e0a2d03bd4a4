"""Where the image bytes are in a prediction request: a multipart file, a raw image body, or
base64 in JSON; and the ``include_image`` query flag.

Read by hand rather than declared as FastAPI parameters: FastAPI's solving of a declared
parameter costs the event loop more per request than reading it here, and the event loop's
time per request is what bounds /predict (docs/performance.md). The routes document the
same parameters in OpenAPI.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request

from service.errors import BadRequest, UnsupportedMediaType, ValidationFailed
from service.http.multipart import boundary_of, read_files
from service.predictor import Upload

RAW_TYPES = ("image/", "application/octet-stream")
ACCEPTED = "multipart/form-data (field 'file'), image/* or application/json {\"image\": base64}"
INCLUDE_IMAGE = "include_image"
SINGLE_FIELD, BATCH_FIELD = "file", "files"
_FLAG = TypeAdapter(bool)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def include_image(request: Request) -> bool:
    """The ``include_image`` query flag, by pydantic's rules for booleans ("true", "1",
    "yes", ...; anything else is a 422)."""
    if not request.scope["query_string"]:
        return False
    value = request.query_params.get(INCLUDE_IMAGE)
    if value is None:
        return False
    try:
        return _FLAG.validate_python(value)
    except ValidationError as exc:
        raise ValidationFailed(f"query.{INCLUDE_IMAGE}: {exc.errors()[0]['msg']}") from exc


async def single_upload(request: Request) -> Upload:
    """The one image of a /predict request, whichever of the three forms it came in."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        (upload,) = await form_uploads(request, SINGLE_FIELD, max_files=1)
        return upload
    if kind == "application/json":
        return Upload(await _json_image(request))
    if kind.startswith(RAW_TYPES) and kind != "image/svg+xml":
        return Upload(await request.body())
    raise UnsupportedMediaType(
        f"content type '{kind or '(none)'}' is not accepted; send {ACCEPTED}"
    )


async def batch_uploads(request: Request, max_files: int) -> list[Upload]:
    """The images of a /predict/batch request: multipart, repeated field ``files``."""
    kind = media_type(request)
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(
            f"content type '{kind or '(none)'}' is not accepted; "
            f"send multipart/form-data with repeated field '{BATCH_FIELD}'"
        )
    return await form_uploads(request, BATCH_FIELD, max_files)


async def form_uploads(request: Request, field: str, max_files: int) -> list[Upload]:
    boundary = boundary_of(request.headers.get("content-type", ""))
    return read_files(await request.body(), boundary, field, max_files)


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
