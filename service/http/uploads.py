"""Where the image bytes are in a prediction request: a multipart file, a raw image body, or
base64 in JSON; and the ``include_image`` and ``explain`` query flags.

Plain functions of the request's content type, body and query string: the prediction routes
are answered without FastAPI's request machinery (service/http/fast_routes.py), and the
OpenAPI description of the same parameters is written in service/http/routes/predict.py.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

from pydantic import TypeAdapter, ValidationError

from service.errors import BadRequest, UnsupportedMediaType, ValidationFailed
from service.http.json_body import InvalidJSON, json_type, parse_json
from service.http.multipart import boundary_of, read_files
from service.predictor import Upload

RAW_TYPES = ("image/", "application/octet-stream")
ACCEPTED = (
    "multipart/form-data (field 'file'), image/* (not SVG), application/octet-stream or "
    'application/json {"image": base64}'
)
INCLUDE_IMAGE_PARAM = "include_image"
EXPLAIN_PARAM = "explain"
_FLAGS = (INCLUDE_IMAGE_PARAM, EXPLAIN_PARAM)
SINGLE_FIELD, BATCH_FIELD = "file", "files"
_FLAG = TypeAdapter(bool)


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def query_flags(query_string: bytes) -> tuple[bool, bool]:
    """The ``include_image`` and ``explain`` query flags (each its last value), by pydantic's
    rules for booleans ("true", "1", "yes", ...; anything else is a 422)."""
    if not query_string:
        return False, False
    values: dict[str, str] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), True):
        if key in _FLAGS:
            values[key] = value
    return _flag(values, INCLUDE_IMAGE_PARAM), _flag(values, EXPLAIN_PARAM)


def _flag(values: dict[str, str], name: str) -> bool:
    if name not in values:
        return False
    try:
        return _FLAG.validate_python(values[name])
    except ValidationError as exc:
        raise ValidationFailed(f"query.{name}: {exc.errors()[0]['msg']}") from exc


def single_upload(content_type: str, body: bytes) -> Upload:
    """The one image of a /predict request, whichever of the three forms it came in."""
    kind = media_type(content_type)
    if kind == "multipart/form-data":
        (upload,) = form_uploads(content_type, body, SINGLE_FIELD, max_files=1)
        return upload
    if kind == "application/json":
        return Upload(_json_image(body))
    if kind.startswith(RAW_TYPES) and kind != "image/svg+xml":
        return Upload(body)
    raise UnsupportedMediaType(
        f"content type '{kind or '(none)'}' is not accepted; send {ACCEPTED}"
    )


def batch_uploads(content_type: str, body: bytes, max_files: int) -> list[Upload]:
    """The images of a /predict/batch request: multipart, repeated field ``files``."""
    kind = media_type(content_type)
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(
            f"content type '{kind or '(none)'}' is not accepted; "
            f"send multipart/form-data with repeated field '{BATCH_FIELD}'"
        )
    return form_uploads(content_type, body, BATCH_FIELD, max_files)


def form_uploads(content_type: str, body: bytes, field: str, max_files: int) -> list[Upload]:
    return read_files(body, boundary_of(content_type), field, max_files)


_URL_SAFE = str.maketrans("-_", "+/")


def _standard_base64(text: str) -> str:
    """``text`` in the standard alphabet, padded. Encoders of RFC 4648's URL-safe alphabet
    (Python's ``urlsafe_b64encode``, JavaScript's base64url, Go's ``RawURLEncoding``) and
    those that drop the padding are common; a string in both alphabets is no encoding."""
    compact = "".join(text.split())
    if any(c in compact for c in "-_"):
        if any(c in compact for c in "+/"):
            raise ValidationFailed(
                "field 'image' mixes base64's standard (+/) and URL-safe (-_) alphabets"
            )
        compact = compact.translate(_URL_SAFE)
    return compact + "=" * (-len(compact) % 4)


def _from_base64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValidationFailed(f"field 'image' must be a base64 string, got {json_type(text)}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(_standard_base64(text), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(f"field 'image' is not valid base64: {exc}") from exc


def _json_image(body: bytes) -> bytes:
    try:
        payload = parse_json(body)
    except InvalidJSON as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "image" not in payload:
        raise ValidationFailed('JSON body must be an object {"image": "<base64>"}')
    extra = sorted(set(payload) - {"image"})
    if extra:
        raise ValidationFailed(f"unexpected JSON field(s) {extra}; only 'image' is accepted")
    return _from_base64(payload["image"])
