"""The one configuration class of the service: every knob, its default and why (some groups
of fields are declared in service/settings/fields.py).

Values come from the environment (prefix ``DIGITS_``); nothing else in ``service/`` reads a
``DIGITS_*`` variable (service/tracing/ reads OpenTelemetry's own ``OTEL_*`` ones). Invalid
values stop start-up with a message that names the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.resources import available_cpus, resolve_model_path
from service.settings.fields import (
    MIN_ADMIN_TOKEN_CHARS,
    AnswerFields,
    ConnectionFields,
    FeedbackFields,
    ModelLifecycleFields,
    format_names,
)

DEFAULT_MODEL = Path("models") / "lenet5.onnx"
KNOWN_IMAGE_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM", "ICO"})

Provider = Literal["cpu", "cuda", "auto"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
EventLoop = Literal["asyncio", "uvloop"]
UPLOAD_ENVELOPE_BYTES = 1024  # the JSON around a load request's base64 file
V2_MAX_BATCH_SIZE = 1024


def base64_length(size: int) -> int:
    """Characters of ``size`` bytes in base64, padding included."""
    return 4 * math.ceil(size / 3)


class Settings(ConnectionFields, ModelLifecycleFields, FeedbackFields, AnswerFields, BaseSettings):
    """Service configuration; each field is the environment variable ``DIGITS_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="DIGITS_",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,  # Settings(port=...) as well as the env aliases
    )

    model_path: Path = Field(
        DEFAULT_MODEL,
        description="ONNX model to serve. Relative paths are tried against the working "
        "directory, then the repository root.",
    )
    model_card_path: Path | None = Field(
        None,
        description="Model card JSON (accuracy, sha256). Default: the model path with .json.",
    )
    provider: Provider = Field(
        "cpu",
        description="ONNX Runtime execution provider: cpu, cuda (falls back to CPU with a "
        "warning when CUDA is unavailable) or auto (CUDA when available, else CPU).",
    )
    intra_op_threads: int = Field(
        1,
        ge=0,
        description="ONNX Runtime threads inside one operator. 1 suits LeNet-5 on small "
        "machines: the default pool spins and doubles CPU for no gain. 0 = ORT default.",
    )
    inter_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime threads across operators. 0 = ORT default."
    )
    host: str = Field("127.0.0.1", description="Address uvicorn binds (0.0.0.0 in containers).")
    port: int = Field(
        8000,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("DIGITS_PORT", "PORT"),
        description="TCP port uvicorn listens on. When unset, PORT is used (Knative and "
        "KServe inject it), then 8000.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (413 payload_too_large above), checked "
        "from Content-Length and while reading, never after buffering.",
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=784,
        description="Largest image (width x height) decoded; checked from the image header "
        "before any pixel is decoded (413 image_too_large above): stops decompression bombs.",
    )
    max_batch_pixels: int = Field(
        40_000_000,
        ge=784,
        description="Most pixels one request's images may decode together in one worker (a "
        "batch is spread over the workers, at most DIGITS_BATCH_MAX_SIZE images to each, and "
        "each share has this budget; never less than DIGITS_MAX_IMAGE_PIXELS); the images past "
        "it get 413 image_too_large. Bounds the worker time one batch of large PNGs can take.",
    )
    max_batch_files: int = Field(
        64, ge=1, description="Most images in one POST /predict/batch request."
    )
    v2_max_batch_size: int | None = Field(
        None,
        ge=1,
        description="Most images in one V2 inference request (the model config's "
        "max_batch_size); unset: 1024, or the queue when it is smaller.",
    )
    allowed_image_formats: Annotated[frozenset[str], NoDecode] = Field(
        frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"}),
        description="Image formats (Pillow names) accepted; others are 415. In the "
        'environment separated by commas, PNG,JPEG (or a JSON list, \'["PNG","JPEG"]\').',
    )
    batch_max_size: int = Field(
        32,
        ge=1,
        description="Most images a worker merges into one ONNX Runtime call (a larger V2 "
        "request runs as one call of its own).",
    )
    batch_max_delay_us: int = Field(
        0,
        ge=0,
        description="How long (microseconds) a worker waits for more inputs after the first "
        "before running a partial batch. 0 = run what arrived together at once (best on "
        "CPU); on a GPU a few hundred lets larger batches form.",
    )
    batch_max_queue_images: int = Field(
        4096,
        ge=1,
        description="Most images admitted and not yet answered; beyond it requests are refused "
        "at once with 503 overloaded + Retry-After instead of queueing without bound.",
    )
    front_ends: int = Field(
        1,
        ge=1,
        description="Processes that accept connections on the port, each with its own event "
        "loop and its share of the worker processes; metrics add up across them. One event "
        "loop serves a few thousand /predict a second (README, capacity model): add front ends "
        "on machines with more cores than that needs.",
    )
    metrics_dir: Path | None = Field(
        None,
        description="With several front ends, the folder where they share their metrics "
        "(prometheus_client's multiprocess mode); default: a new temporary folder.",
    )
    preprocess_workers: int = Field(
        0,
        ge=0,
        description="Worker processes that decode, normalise and run the model, so that this "
        "work never holds the event loop's GIL. 0 = one per CPU core available to the process "
        "(its affinity, capped by a cgroup CPU quota).",
    )
    overflow_backlog_images: int = Field(
        32,
        ge=0,
        description="With several workers, the last one shares a core with the event loop: "
        "it gets images only while every other worker has at least this much load waiting, "
        "its images and an image more per 8 KB of them (bulk traffic: /predict/batch, V2 "
        "batches, large uploads), so that single-image traffic, where the event "
        "loop needs its whole core, never competes with it. 0 = every worker alike.",
    )
    overflow_wait_ms: float = Field(
        20.0,
        gt=0,
        description="...or while every other worker's oldest unanswered frame has waited this "
        "long: a few large photos or pages are seconds of work though far fewer than "
        "DIGITS_OVERFLOW_BACKLOG_IMAGES, and single small images never wait as long.",
    )
    preprocess_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest time one image may spend in decode + normalisation; past it the "
        "image is refused (400 invalid_image) and its worker process is replaced.",
    )
    retry_after_seconds: int = Field(
        1, ge=0, description="Retry-After header value sent with 503 answers."
    )
    event_loop: EventLoop = Field(
        "asyncio",
        description="Event loop under uvicorn. asyncio accepts every waiting connection "
        "at once; uvloop (libuv) accepted about one per loop iteration on a busy server, so "
        "new connections waited seconds behind established ones (README, Benchmark).",
    )
    log_level: LogLevel = Field("INFO", description="Log level of the JSON logs on stderr.")
    access_log: bool = Field(True, description="One JSON access-log line per request.")

    @field_validator("allowed_image_formats", mode="before")
    @classmethod
    def _format_list(cls, value: object) -> object:
        return format_names(value) if isinstance(value, str) else value

    @field_validator("allowed_image_formats", mode="after")
    @classmethod
    def _known_formats(cls, value: frozenset[str]) -> frozenset[str]:
        upper = frozenset(name.upper() for name in value)
        unknown = sorted(upper - KNOWN_IMAGE_FORMATS)
        if unknown:
            raise ValueError(
                f"unknown image format(s) {unknown}; known: {sorted(KNOWN_IMAGE_FORMATS)}"
            )
        if not upper:
            raise ValueError("at least one image format must be allowed")
        return upper

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("admin_token", mode="after")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters long")
        return value

    @model_validator(mode="after")
    def _consistent_limits(self) -> Self:
        """Checks across fields; their messages name the variables, as start-up's errors of
        one field do (the operator set those, not the fields)."""
        batches = {
            "MAX_BATCH_FILES": self.max_batch_files,
            "V2_MAX_BATCH_SIZE": self.v2_max_batch_size,
        }
        for name, images in batches.items():
            if images and images > self.batch_max_queue_images:
                raise ValueError(
                    f"DIGITS_{name} ({images}) must not exceed DIGITS_BATCH_MAX_QUEUE_IMAGES "
                    f"({self.batch_max_queue_images}): such a batch could never be queued"
                )
        if self.feedback_dir is not None and self.front_ends > 1:
            raise ValueError(
                "DIGITS_FEEDBACK_DIR needs DIGITS_FRONT_ENDS=1: a correction is matched to its "
                "answer in the memory of the front end that gave it, and several front ends "
                "share a port"
            )
        if self.front_ends > self.resolved_preprocess_workers:
            raise ValueError(
                f"DIGITS_FRONT_ENDS ({self.front_ends}) must not exceed the worker processes "
                f"({self.resolved_preprocess_workers}, DIGITS_PREPROCESS_WORKERS or one per "
                "core): each front end has workers of its own, so more front ends would start "
                "more workers than that"
            )
        upload_body = base64_length(self.max_model_bytes) + UPLOAD_ENVELOPE_BYTES
        if self.admin_token is not None and upload_body > self.max_body_bytes:
            raise ValueError(
                f"DIGITS_MAX_MODEL_BYTES ({self.max_model_bytes}) needs a body of {upload_body} "
                f"bytes in base64, over DIGITS_MAX_BODY_BYTES ({self.max_body_bytes}): raise "
                "DIGITS_MAX_BODY_BYTES or lower DIGITS_MAX_MODEL_BYTES"
            )
        return self

    @property
    def resolved_preprocess_workers(self) -> int:
        """One worker per core; the one sharing the event loop's core is the overflow worker
        (``overflow_backlog_images``)."""
        return self.preprocess_workers or available_cpus()

    @property
    def workers_per_front_end(self) -> int:
        return max(1, self.resolved_preprocess_workers // self.front_ends)

    @property
    def resolved_model_path(self) -> Path:
        return resolve_model_path(self.model_path)

    @property
    def resolved_check_digits_path(self) -> Path:
        return resolve_model_path(self.check_digits_path)

    @property
    def resolved_v2_max_batch_size(self) -> int:
        """A quarter of the default queue: several clients' largest batches queue together."""
        return self.v2_max_batch_size or min(V2_MAX_BATCH_SIZE, self.batch_max_queue_images)

    @property
    def resolved_shadow_model_path(self) -> Path | None:
        return self.shadow_model_path and resolve_model_path(self.shadow_model_path)

    @property
    def resolved_model_card_path(self) -> Path:
        if self.model_card_path is not None:
            return resolve_model_path(self.model_card_path)
        return self.resolved_model_path.with_suffix(".json")
