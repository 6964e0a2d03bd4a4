"""The public wire format: pydantic models for answers, with the examples shown in /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

# An X-Request-ID kept as the client sent it, and so one a correction can name.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"

# The examples shown in /docs are the shipped model's real answers (examples/digit.png for a
# prediction), rounded to 3 decimals; tests/docs/test_openapi_examples.py keeps them true.
_PROBABILITIES: list[JsonValue] = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


class ModelRef(BaseModel):
    name: str = Field(examples=["lenet5"])
    version: str = Field(examples=["1.0.0"])


class Explanation(BaseModel):
    """Why the answer: which pixels of the 28x28 input pushed the model towards ``target``."""

    method: Literal["occlusion"] = Field(
        description="Each 2x2 patch touching ink is blanked out in turn; a pixel's value is "
        "the mean drop of the target's probability over the patches covering it."
    )
    parameters: dict[str, object] = Field(
        examples=[{"patch": 2, "stride": 1, "baseline": 0.0, "score": "probability drop"}]
    )
    target: int = Field(ge=0, le=9, description="The digit explained: the predicted one.")
    values: list[list[float]] = Field(
        min_length=28,
        max_length=28,
        description="28 rows of 28 values: positive where the ink supports `target`, "
        "negative where it argues against it, 0 away from the ink.",
    )
    overlay: str = Field(
        description="The map over the image the model saw (red to yellow: support, blue: "
        "against), a 28x28 RGB PNG in base64 without a data: prefix."
    )


class Prediction(BaseModel):
    """The digit read from one image."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "digit": 3,
                    "confidence": 1.0,
                    "probabilities": _PROBABILITIES,
                    "model": {"name": "lenet5", "version": "1.0.0"},
                }
            ]
        }
    )

    digit: int = Field(ge=0, le=9, description="The most probable digit.")
    confidence: float = Field(ge=0, le=1, description="Probability of `digit`.")
    probabilities: list[float] = Field(
        min_length=10, max_length=10, description="Probability of each digit 0..9."
    )
    model: ModelRef
    normalized_image: str | None = Field(
        None,
        description="Only with ?include_image=true: the 28x28 input the model saw, as a "
        "base64 PNG without a data: prefix.",
    )
    explanation: Explanation | None = Field(None, description="Only with ?explain=true.")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"], description="Stable snake_case error code.")
    message: str = Field(
        examples=[
            "cannot identify an image in 12 bytes; send one of BMP, GIF, JPEG, PNG, TIFF, WEBP"
        ]
    )


class ErrorBody(BaseModel):
    """Every error answer (except /v2): what went wrong, naming the value."""

    error: ErrorDetail


class RefusalBody(ErrorBody):
    """A prediction route's error: an image refused after the model ran (``not_a_digit``)
    also carries what the model saw and why, when asked for."""

    normalized_image: str | None = Field(
        None, description="Only for not_a_digit, with ?include_image=true or ?explain=true."
    )
    explanation: Explanation | None = Field(
        None, description="Only for not_a_digit, with ?explain=true."
    )


class BatchEntry(Prediction):
    filename: str | None = Field(None, description="The uploaded file's name.")


class BatchError(RefusalBody):
    filename: str | None = None


class BatchPrediction(BaseModel):
    """One entry per uploaded file, in request order; a bad file fails only its own entry."""

    predictions: list[BatchEntry | BatchError]


class ImagePayload(BaseModel):
    """JSON body of POST /predict."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(
        description="The image file's bytes in base64 (a data: URL prefix is accepted).",
        # A 28x28 1-bit PNG of a 7, whole: a generated client or mock sends it as it is.
        examples=[
            "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcAQAAAABaduI5AAAARklEQVR42nXNsRFAQBQFwL03AqEOKEXpQuWcTHD"
            "jK8BINt1WXIEPbRaGMJnUKczCISxUrT1sogi7eFCjegyiETcRotP+yhdqghP4TsB8/AAAAABJRU5ErkJggg=="
        ],
    )


class Correction(BaseModel):
    """POST /feedback: what an answer should have been."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"request_id": "3f9c2a71d4e8b6050000000000000007", "digit": 3}]
        },
    )
    request_id: str = Field(
        pattern=REQUEST_ID_PATTERN,
        description="The X-Request-ID of the answer being corrected.",
    )
    # Strict: true or "3" as a digit is a client's bug, not a correction to store as 1 or 3.
    # 3.0 is JSON's 3 (JSON Schema's "integer", which /openapi.json says, includes it).
    digit: int | None = Field(
        ge=0, le=9, strict=True, description="What the image really was; null: not a digit."
    )
    index: int = Field(
        0,
        ge=0,
        strict=True,
        description="For /predict/batch answers: the image's position in the batch.",
    )

    @field_validator("digit", "index", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        """3.0 as 3, for the strict check; 3.5, true and "3" go on to be refused."""
        if type(value) is float and value.is_integer():
            return int(value)
        return value


class CorrectionRecorded(BaseModel):
    id: str = Field(description="The record's id in the corrections folder.")
    request_id: str
    index: int
    predicted: int | str = Field(description="The answer given: a digit or an error code.")
    label: int | None = Field(description="The correction: a digit, or null (not a digit).")


class FeedbackStatus(BaseModel):
    enabled: bool
    window_seconds: float | None = None
    records: int | None = Field(None, description="Corrections in the folder now.")
    max_records: int | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = Field(examples=["ready"])


class Signature(BaseModel):
    name: str
    dtype: str = "float32"
    shape: list[str | int]


class ModelDescription(BaseModel):
    """The model being served (GET /model)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "lenet5",
                    "version": "1.0.0",
                    "sha256": "6de7147766ede88d20cb75d8217bac60f328e9159575caa5b99982363b22b600",
                    "provider": "CPUExecutionProvider",
                    "created_at": "2026-12-06T08:45:26Z",
                    "input": {"name": "image", "dtype": "float32", "shape": ["N", 1, 28, 28]},
                    "output": {"name": "probabilities", "dtype": "float32", "shape": ["N", 10]},
                    "labels": [str(d) for d in range(10)],
                    "val_accuracy": 0.9932,
                    "test_accuracy": 0.9949,
                    # A few of each: the shipped model's are longer.
                    "metadata": {
                        "name": "lenet5",
                        "version": "1.0.0",
                        "labels": [str(d) for d in range(10)],
                        "normalization": {"mean": 0.1307, "std": 0.3081, "in_graph": True},
                    },
                    "card": {"file": "lenet5.onnx", "opset": 18, "test_errors": 51},
                    "not_a_digit": {
                        "rule": "certainty",
                        "threshold": 0.022864,
                        "source": "model",
                        "refused_when": "certainty(probabilities) < 0.022864",
                    },
                }
            ]
        }
    )

    name: str
    version: str
    sha256: str
    provider: str = Field(description="The ONNX Runtime execution provider actually in use.")
    created_at: str | None
    input: Signature
    output: Signature
    labels: list[str]
    val_accuracy: float | None = Field(description="Fraction, not percent.")
    test_accuracy: float | None = Field(description="Fraction, not percent.")
    metadata: dict[str, Any] = Field(
        description="The ONNX metadata_props: strings as stored, except values stored as "
        "JSON objects or lists (labels, normalization, training_config, data_sha256, fonts), "
        "which come back decoded."
    )
    card: dict[str, object] | None = Field(description="The model card JSON, when present.")
    not_a_digit: dict[str, object] | None = Field(
        None,
        description="The rule in force for answering 422 not_a_digit: `rule`, `threshold`, "
        "`source` (model or setting), `refused_when`; null when turned off.",
    )
