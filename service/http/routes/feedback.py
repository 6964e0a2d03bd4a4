"""POST /feedback: "that answer was wrong, it was a 3" (or "not a digit"); GET /feedback
says whether corrections are being recorded (the page shows its control only then)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse

from service.errors import (
    BadRequest,
    FeedbackDisabled,
    UnsupportedMediaType,
    ValidationFailed,
    quoted,
)
from service.feedback import Feedback
from service.http.errors import validation_message
from service.http.fast_routes import refuse_compressed
from service.http.json_body import InvalidJSON, parse_json
from service.http.schemas import Correction, CorrectionRecorded, ErrorBody, FeedbackStatus
from service.http.state import state_of
from service.http.uploads import media_type

router = APIRouter(tags=["feedback"])
_OFF = (
    "corrections are not being recorded: the service runs without DIGITS_FEEDBACK_DIR "
    "(it keeps no user input then)"
)


async def feedback_of(request: Request) -> Feedback:
    """The app's Feedback; FeedbackDisabled (404) when feedback is off."""
    feedback = state_of(request).feedback
    if feedback is None:
        raise FeedbackDisabled(_OFF)
    return feedback


FeedbackDep = Annotated[Feedback, Depends(feedback_of)]
_SHAPE = '{"request_id": "<X-Request-ID>", "digit": 3}'


async def _json_object(request: Request) -> dict[str, object]:
    media = media_type(request.headers.get("content-type", ""))
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"a correction is JSON: send it as Content-Type: application/json, not {quoted(media)}"
        )
    refuse_compressed(request.headers.get("content-encoding", ""))
    raw = await request.body()
    if not raw.strip():
        raise BadRequest(f"the request body is empty: send a correction, e.g. {_SHAPE}")
    try:
        document = parse_json(raw)
    except InvalidJSON as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValidationFailed(f"the body must be a JSON object, e.g. {_SHAPE}")
    return document


async def correction_of(request: Request) -> Correction:
    """The body as a Correction. Read here rather than by FastAPI, whose body parsing answered
    a body nested too deeply, an over-long integer or bytes that are not UTF-8 with a bare
    "There was an error parsing the body", and valid JSON sent as text/plain with "Input
    should be a valid dictionary"; the same reader as the other JSON routes says which."""
    document = await _json_object(request)
    try:
        return Correction.model_validate(document)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc.errors(), within=("body",))) from None


CorrectionBody = Annotated[Correction, Depends(correction_of)]


@router.get("/feedback", response_model=FeedbackStatus, summary="Whether corrections are kept")
async def feedback_status(request: Request) -> JSONResponse:
    feedback = state_of(request).feedback
    return JSONResponse({"enabled": False} if feedback is None else feedback.describe())


@router.post(
    "/feedback",
    status_code=201,
    response_model=CorrectionRecorded,
    responses={
        400: {"model": ErrorBody, "description": "A body that is not JSON (`bad_request`)"},
        404: {"model": ErrorBody, "description": "`unknown_request` or `feedback_disabled`"},
        409: {
            "model": ErrorBody,
            "description": "`already_corrected`, `ambiguous_request`, `nothing_to_correct`",
        },
        413: {"model": ErrorBody, "description": "Body over DIGITS_MAX_BODY_BYTES"},
        415: {"model": ErrorBody, "description": "A body that is not JSON, or is compressed"},
        422: {"model": ErrorBody, "description": "`validation_error`"},
        507: {"model": ErrorBody, "description": "`feedback_full`"},
    },
    summary="Correct a recent answer",
    description="Names an answer of the last DIGITS_FEEDBACK_WINDOW_SECONDS by its "
    "X-Request-ID (and, for /predict/batch, the image's position); its 28x28 input is "
    "stored with the right label in DIGITS_FEEDBACK_DIR for the next training run.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": Correction.model_json_schema()}},
        }
    },
)
async def correct(feedback: FeedbackDep, body: CorrectionBody) -> JSONResponse:
    recorded = await feedback.correct(body.request_id, body.index, body.digit)
    return JSONResponse(recorded, status_code=201)
