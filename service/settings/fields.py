"""Groups of the service's settings, by what they govern; ``Settings`` (service/settings/
__init__.py) is the one class that has them all, read from the DIGITS_* environment."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator

DEFAULT_CHECK_DIGITS = Path("models") / "check-digits.npz"
MIN_ADMIN_TOKEN_CHARS = 16


class ConnectionFields(BaseModel):
    """The HTTP connections' limits and the graceful stop (service/http/guard.py)."""

    graceful_shutdown_seconds: float = Field(
        10.0,
        gt=0,
        description="After SIGTERM, how long requests in flight may take to finish before "
        "the server exits anyway (a stalled upload must not block shutdown forever).",
    )
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="Largest request head (request line and headers) in bytes; above it the "
        "answer is 431 and the connection is closed. A chunked body's extensions and trailer "
        "fields together have the same cap (413, closed).",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest time from a request's first byte (a new connection's opening) "
        "to the end of its head; past it 408 and the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="How long a request body may take before it must have averaged "
        "DIGITS_BODY_MIN_BYTES_PER_SECOND, and the longest it may stop arriving; slower, "
        "408 and the connection is closed.",
    )
    body_min_bytes_per_second: int = Field(
        16 * 1024,
        ge=1,
        description="Slowest average rate (bytes/s) a request body may arrive at, once "
        "DIGITS_BODY_TIMEOUT_SECONDS have passed.",
    )
    max_body_bytes_in_flight: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Most bytes of request bodies one front-end process holds for requests "
        "not yet answered (it holds each three or four times over while reading and framing "
        "it); a body that would take it past this is refused as it arrives, 503 overloaded "
        "with Retry-After, unless it is the only one held. Bounds the front end's memory "
        "under many large uploads at once.",
    )
    keep_alive_seconds: float = Field(
        5.0,
        gt=0,
        allow_inf_nan=False,  # uvicorn takes whole seconds
        description="How long an idle keep-alive connection stays open.",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        description="Most open connections per front-end process; at it the connections "
        "longest waiting for a request are closed to make room, and only when all have one in "
        "hand is a new connection answered 503 overloaded (with Retry-After) and closed.",
    )


class ModelLifecycleFields(BaseModel):
    """Loading a new model while serving, and a shadow model (service/repository/)."""

    admin_token: SecretStr | None = Field(
        None,
        description="Opens the model repository routes (load, index) to clients sending "
        "`Authorization: Bearer <token>` (unset: 404). At least "
        f"{MIN_ADMIN_TOKEN_CHARS} characters; never logged.",
    )
    max_model_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest ONNX file a load may upload (413 above); its base64 must fit "
        "in DIGITS_MAX_BODY_BYTES.",
    )
    model_min_accuracy: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        description="Accuracy floor on the check digits: a model below it does not start, "
        "and a load below it is refused (the model served before keeps serving).",
    )
    check_digits_path: Path = Field(
        DEFAULT_CHECK_DIGITS,
        description="Labelled real digits (npz: images uint8 [N,28,28], labels) the model is "
        "checked on at start-up and at every load, before it serves.",
    )
    shadow_model_path: Path | None = Field(
        None,
        description="A second ONNX model each worker runs on a sample of live inputs after "
        "their answers left, compared with the served one (digits_shadow_* metrics).",
    )
    shadow_sample_rate: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of live inputs the shadow model sees (evenly spread, not random); "
        "it runs only while its worker has nothing else waiting.",
    )


class FeedbackFields(BaseModel):
    """Corrections of answers (service/feedback/); off unless feedback_dir is set."""

    feedback_dir: Path | None = Field(
        None,
        description="Folder where corrections (POST /feedback) are written: 28x28 PNGs and "
        "index.jsonl, read by `python -m training train --extra-data`. Unset (the default): "
        "no correction is accepted and no user input is kept. Needs DIGITS_FRONT_ENDS=1.",
    )
    feedback_window_seconds: float = Field(
        600.0,
        gt=0,
        description="How long after an answer it may be corrected; its 28x28 input is kept "
        "in memory that long (with feedback on).",
    )
    feedback_recent_answers: int = Field(
        10_000,
        ge=1,
        description="Most answers kept in memory for correction, about 1 KB each; the "
        "oldest go first when more arrive within the window.",
    )
    feedback_max_records: int = Field(
        100_000,
        ge=1,
        description="Most corrections the folder may hold (about 1 KB each); beyond it POST "
        "/feedback answers 507 feedback_full.",
    )


class AnswerFields(BaseModel):
    """What is answered for an image the model ran on (service/workers/verdict.py)."""

    not_a_digit_threshold: str = Field(
        "model",
        description="When an image is answered 422 not_a_digit instead of a digit: 'model' "
        "uses the rule and threshold the model was shipped with (its metadata, chosen on "
        "validation data), a number between 0 and 1 replaces the threshold (lower refuses "
        "less), 'off' answers every image with a digit. Images whose ink has no digit's "
        "shape (far wider than high, in many pieces, filling its box, closing many loops) are "
        "refused unless off.",
    )

    @field_validator("not_a_digit_threshold", mode="before")
    @classmethod
    def _threshold(cls, value: object) -> str:
        text = str(value).strip().lower()
        if text in ("model", "off"):
            return text
        try:
            number = float(text)
        except ValueError:
            raise ValueError(
                f"expected 'model', 'off' or a number in [0, 1], got {value!r}"
            ) from None
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"a threshold is a number in [0, 1], got {number}")
        return repr(number)


def format_names(text: str) -> list[str]:
    """DIGITS_ALLOWED_IMAGE_FORMATS as an operator writes it: ``PNG,JPEG`` (or ``PNG``), or
    the JSON list it once had to be (a plain name gave a 40-line traceback)."""
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg}); or write PNG,JPEG") from None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError("a JSON list of format names, or PNG,JPEG")
        return names
    return [name.strip() for name in text.split(",") if name.strip()]
