"""The public wire format: pydantic models for answers, with the examples shown in /docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_PROBABILITIES = [0.0, 0.0001, 0.0002, 0.0003, 0.0, 0.0001, 0.0, 0.998, 0.0001, 0.0012]


class ModelRef(BaseModel):
    name: str = Field(examples=["lenet5"])
    version: str = Field(examples=["1.0.0"])


class Prediction(BaseModel):
    """The digit read from one image."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "digit": 7,
                    "confidence": 0.998,
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


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"], description="Stable snake_case error code.")
    message: str = Field(examples=["cannot identify an image in 12 bytes"])


class ErrorBody(BaseModel):
    """Every error answer (except /v2): what went wrong, naming the value."""

    error: ErrorDetail


class BatchEntry(Prediction):
    filename: str | None = Field(None, description="The uploaded file's name.")


class BatchError(BaseModel):
    filename: str | None = None
    error: ErrorDetail


class BatchPrediction(BaseModel):
    """One entry per uploaded file, in request order; a bad file fails only its own entry."""

    predictions: list[BatchEntry | BatchError]


class ImagePayload(BaseModel):
    """JSON body of POST /predict."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(
        description="The image file's bytes in base64 (a data: URL prefix is accepted).",
        examples=["iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA..."],
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"] = Field(examples=["ready"])


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
                    "sha256": "3f2a...",
                    "provider": "CPUExecutionProvider",
                    "created_at": "2026-11-25T10:00:00Z",
                    "input": {"name": "image", "dtype": "float32", "shape": ["N", 1, 28, 28]},
                    "output": {"name": "probabilities", "dtype": "float32", "shape": ["N", 10]},
                    "labels": [str(d) for d in range(10)],
                    "val_accuracy": 0.9915,
                    "test_accuracy": 0.9921,
                    "metadata": {"name": "lenet5", "version": "1.0.0"},
                    "card": None,
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
    metadata: dict[str, str] = Field(description="The ONNX metadata_props as stored.")
    card: dict[str, object] | None = Field(description="The model card JSON, when present.")
    not_a_digit: dict[str, object] | None = Field(
        None,
        description="The rule in force for answering 422 not_a_digit: `rule`, `threshold`, "
        "`source` (model or setting), `refused_when`; null when turned off.",
    )
