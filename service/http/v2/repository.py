"""Triton's model repository extension: ``POST /v2/repository/index``, ``.../models/{m}/load``
and ``.../unload`` (always refused: one model, always served).

These routes change what the service answers, so they are closed unless DIGITS_ADMIN_TOKEN
is set (404 then, as if absent), and open only to ``Authorization: Bearer <that token>``:
401 without credentials, 403 with wrong ones. The token is compared in constant time (of
SHA-256 digests, so not even its length leaks) and never logged or echoed.

A load with no body reloads the file at DIGITS_MODEL_PATH; with
``{"parameters": {"file:<version>/model.onnx": "<base64>"}}`` it loads that file (at most
DIGITS_MAX_MODEL_BYTES; the version its metadata gives it must be the one named); Triton's
``config`` parameter beside it must agree with the served configuration (a load applies none).
What a load does: service/repository/loader.py. With several front-end processes
(DIGITS_FRONT_ENDS) a load is refused with the way that reaches them all: SIGHUP to the main
process.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.contract import v2_version
from service.errors import quoted
from service.http.json_body import INLINE_JSON_BYTES, InvalidJSON, parse_json
from service.http.state import ServiceState, state_of
from service.http.v2 import openapi
from service.http.v2.encoding import decode_body
from service.http.v2.errors import V2Error, documented, unknown_model
from service.http.v2.metadata import model_config
from service.repository.loader import Addressed, LoadRefused
from service.settings import base64_length

router = APIRouter(prefix="/v2/repository", tags=["KServe V2 model repository"])

_FILE_PARAMETER = re.compile(r"^file:(\d+)/model\.onnx$")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="digits model repository"'}
# A load through one front end would swap that one's workers only (each front end has its
# own); SIGHUP to the main process reaches them all (service/server.py). 400, as Triton
# answers a load it does not support in its configuration.
_ONE_FRONT_END = (
    "this server runs {} front-end processes (DIGITS_FRONT_ENDS) and a load through HTTP "
    "would reach only the one that answers; replace the file at DIGITS_MODEL_PATH and send "
    "SIGHUP to the server's main process (kill -HUP <pid>): every front end reloads it, with "
    "the same checks"
)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _authorise(request: Request) -> ServiceState:
    """The app state, once the caller proved it holds the admin token; else V2Error."""
    state = state_of(request)
    token = state.settings.admin_token
    if token is None:
        raise V2Error(
            "the model repository extension is disabled on this server "
            "(DIGITS_ADMIN_TOKEN is not set)",
            404,
        )
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise V2Error("this route needs 'Authorization: Bearer <admin token>'", 401)
    if not hmac.compare_digest(_digest(credentials.strip()), _digest(token.get_secret_value())):
        raise V2Error("the admin token is not valid", 403)
    if state.loader is None or state.model is None or not state.ready:
        raise V2Error("the model is not loaded yet", 503)
    return state


def _error(exc: V2Error) -> Response:
    return exc.response(_CHALLENGE if exc.status_code == 401 else None)


def _parse(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return parse_json(raw)
    except InvalidJSON as exc:
        raise V2Error(f"the request body is not valid JSON: {exc}") from None


async def _json_body(request: Request) -> Any:
    """The body as JSON (None when empty), gzip or deflate undone as on the infer route; a
    model upload is inflated and parsed off the event loop."""
    raw, encoding = await request.body(), request.headers.get("content-encoding")
    limit = state_of(request).settings.max_body_bytes

    def read() -> Any:
        return _parse(decode_body(raw, encoding, limit))

    return read() if len(raw) <= INLINE_JSON_BYTES else await asyncio.to_thread(read)


@router.post(
    "/index",
    summary="The models of the repository, with version and state",
    responses=documented(400, 401, 403, 404, 413, 415, 503),
    openapi_extra=openapi.INDEX,
)
async def repository_index(request: Request) -> Response:
    try:
        state = _authorise(request)
        body = await _json_body(request)
    except V2Error as exc:
        return _error(exc)
    if body is not None and not isinstance(body, dict):
        return _error(V2Error('the request body must be a JSON object, e.g. {"ready": true}'))
    ready = (body or {}).get("ready", False)
    if not isinstance(ready, bool):
        return _error(V2Error(f"'ready' must be a boolean, got {quoted(ready)}"))
    assert state.model is not None and state.loader is not None  # _authorise checked
    # One model, always ready: a load replaces it only once its replacement is ready. A
    # refused load is listed beside it (Triton's UNAVAILABLE, with why) until one succeeds.
    name, version = state.model.name, v2_version(state.model.version)
    entries = [{"name": name, "version": version, "state": "READY", "reason": ""}]
    refusal = state.loader.last_refusal
    if refusal is not None and not ready:
        entries.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": refusal})
    return JSONResponse(entries)


def _check_config(config: Any, model_name: str, served: dict[str, Any]) -> None:
    """Triton's ``config`` parameter: a model configuration as a JSON string. Here the model's
    contract comes from its file and the rest from the DIGITS_* settings, so a load applies
    none of it: each field must be one of ``served`` (GET .../config) with its value, or the
    load is refused (a config asking for max_batch_size 8 was answered 200 and ignored).
    ``version_policy`` is left to the file, whose metadata names its version."""
    try:
        # surrogatepass: a lone surrogate ("\ud800") fails as JSON, not as a 500 here
        parsed = (
            parse_json(config.encode(errors="surrogatepass")) if isinstance(config, str) else None
        )
    except InvalidJSON:
        parsed = None
    if not isinstance(parsed, dict):
        raise V2Error("'config' must be a model configuration: a JSON object in a string")
    if parsed.get("name", model_name) != model_name:
        raise V2Error(f"'config' names model {quoted(parsed['name'])}, not '{model_name}'")
    for field, value in parsed.items():
        if field == "version_policy":
            continue
        if field not in served:
            raise V2Error(
                f"'config' sets {quoted(field)}, which a load cannot apply: this service's model "
                f"configuration comes from the model file and its DIGITS_* settings"
            )
        if value != served[field]:
            raise V2Error(
                f"'config' asks for {field} {quoted(value)}; served: {quoted(served[field])}, "
                "which a load cannot change (it comes from the model file or a DIGITS_* setting)"
            )


def _uploaded_file(
    body: Any, limit: int, model_name: str, served: dict[str, Any]
) -> tuple[bytes, str] | None:
    """The ONNX file a load request carries and the version its parameter names, or None for
    a reload of DIGITS_MODEL_PATH."""
    if body is None:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("parameters", {}), dict):
        raise V2Error('the body must be {"parameters": {"file:1/model.onnx": "<base64>"}}')
    parameters: dict[str, Any] = body.get("parameters", {})
    unknown = sorted(set(body) - {"parameters"})
    if unknown:
        raise V2Error(f"unknown field(s) {unknown}; expected only 'parameters'")
    if "config" in parameters:
        _check_config(parameters["config"], model_name, served)
    # Each file parameter's name and the version it names.
    files = {name: match.group(1) for name in parameters if (match := _FILE_PARAMETER.match(name))}
    others = sorted(set(parameters) - {*files, "config"})
    if others:
        raise V2Error(
            f"unknown parameter(s) {others}; expected 'file:<version>/model.onnx' and 'config'"
        )
    if not files:
        return None
    if len(files) > 1:
        raise V2Error(f"one model file per load, got {sorted(files)}")
    ((parameter, version),) = files.items()
    encoded = parameters[parameter]
    if not isinstance(encoded, str):
        raise V2Error(f"'{parameter}' must be the file's bytes in base64")
    if len(encoded) > base64_length(limit):
        raise V2Error(f"the model file is over the limit of {limit} bytes", 413)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise V2Error(f"'{parameter}' is not valid base64: {exc}") from exc
    if len(data) > limit:
        raise V2Error(f"the model file of {len(data)} bytes is over the limit of {limit}", 413)
    if not data:
        raise V2Error(f"'{parameter}' is empty")
    return data, version


@router.post(
    "/models/{model_name}/load",
    summary="Load the model (again, or from a file)",
    responses=documented(400, 401, 403, 404, 409, 413, 415, 503),
    openapi_extra=openapi.LOAD,
)
async def load_model(request: Request, model_name: str) -> Response:
    try:
        state = _authorise(request)
        assert state.model is not None and state.loader is not None and state.v2_model is not None
        if model_name != state.model.name:
            raise unknown_model(model_name, state.model.name)
    except V2Error as exc:
        return _error(exc)
    try:
        if state.settings.front_ends > 1:
            raise V2Error(_ONE_FRONT_END.format(state.settings.front_ends))
        body = await _json_body(request)
        limit = state.settings.max_model_bytes
        served = model_config(state.v2_model)
        upload = await asyncio.to_thread(_uploaded_file, body, limit, model_name, served)
    except V2Error as exc:  # a load refused all the same: counted, and in the index
        state.loader.refused(f"the request: {exc.message}")
        return _error(exc)
    data, version = upload or (None, None)
    try:
        outcome = await state.loader.load(data, Addressed(model_name, version))
    except LoadRefused as exc:
        return V2Error(f"failed to load '{model_name}': {exc.message}", exc.status_code).response()
    info, previous = outcome.info, outcome.previous
    return JSONResponse(
        {
            "name": info.name,
            "version": v2_version(info.version),
            "model_version": info.version,
            "sha256": info.sha256,
            "state": "READY",
            "changed": outcome.changed,
            "previous": {
                "name": previous.name,
                "version": v2_version(previous.version),
                "model_version": previous.version,
            },
            "check_accuracy": outcome.accuracy,
            "check_digits": outcome.digits,
            "seconds": round(outcome.seconds, 3),
        }
    )


@router.post(
    "/models/{model_name}/unload",
    summary="Unload (refused: one model, always served)",
    responses=documented(400, 401, 403, 404, 413, 503),
    openapi_extra=openapi.ADMIN,
)
async def unload_model(request: Request, model_name: str) -> Response:
    try:
        state = _authorise(request)
    except V2Error as exc:
        return _error(exc)
    served = state.model.name if state.model else "?"
    if model_name != served:  # as a load of it would answer
        return unknown_model(model_name, served).response()
    message = (
        f"this server serves exactly one model ('{served}') and never unloads it; "
        "load another in its place instead"
    )
    return V2Error(message, 400).response()
