"""POST /feedback: "that answer was wrong, it was a 3" (or "not a digit"); GET /feedback
says whether corrections are being recorded (the page shows its control only then)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from service.errors import FeedbackDisabled
from service.feedback import Feedback
from service.http.schemas import Correction, CorrectionRecorded, ErrorBody, FeedbackStatus
from service.http.state import state_of

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
        409: {"model": ErrorBody, "description": "`already_corrected`"},
        422: {"model": ErrorBody, "description": "`validation_error`"},
        507: {"model": ErrorBody, "description": "`feedback_full`"},
    },
    summary="Correct a recent answer",
    description="Names an answer of the last DIGITS_FEEDBACK_WINDOW_SECONDS by its "
    "X-Request-ID (and, for /predict/batch, the image's position); its 28x28 input is "
    "stored with the right label in DIGITS_FEEDBACK_DIR for the next training run.",
)
async def correct(body: Correction, feedback: FeedbackDep) -> JSONResponse:
    recorded = await feedback.correct(body.request_id, body.index, body.digit)
    return JSONResponse(recorded, status_code=201)
