"""The one configuration class of the service: every knob, its default and why.

Values come from the environment (prefix ``DIGITS_``); nothing else in ``service/`` reads
``os.environ``. Invalid values stop start-up with a message that names the field.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The package sits at <repo>/service, so the repository (and models/) is its parent. Installed
# wheels have no models/ there; the current directory is tried next (the container's WORKDIR).
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path("models") / "lenet5.onnx"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
KNOWN_IMAGE_FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM", "ICO"})

Provider = Literal["cpu", "cuda", "auto"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
EventLoop = Literal["asyncio", "uvloop"]


def resolve_model_path(path: Path) -> Path:
    """An absolute path as given; a relative one against the cwd, then the repository root."""
    if path.is_absolute():
        return path
    for base in (Path.cwd(), _PACKAGE_ROOT):
        candidate = base / path
        if candidate.exists():
            return candidate.resolve()
    return (_PACKAGE_ROOT / path).resolve()


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU quota.

    A pod limited to one CPU on a 32-core node sees 32 cores through the affinity mask alone;
    one worker process per core there would mean 32 workers fighting over one CPU's quota.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 here, or a format we do not know: no cap
        pass
    return cores


class Settings(BaseSettings):
    """Service configuration; each field is the environment variable ``DIGITS_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="DIGITS_", env_ignore_empty=True, extra="ignore", frozen=True
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
    not_a_digit_threshold: str = Field(
        "model",
        description="When an image is answered 422 not_a_digit instead of a digit: 'model' "
        "uses the rule and threshold the model was shipped with (its metadata, chosen on "
        "validation data), a number between 0 and 1 replaces the threshold (lower refuses "
        "less), 'off' answers every image with a digit. Images whose ink has no digit's "
        "shape (far wider than high, in many pieces, filling its box) are refused unless off.",
    )
    host: str = Field("127.0.0.1", description="Address uvicorn binds (0.0.0.0 in containers).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port uvicorn listens on.")
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
    max_batch_files: int = Field(
        64, ge=1, description="Most images in one POST /predict/batch request."
    )
    allowed_image_formats: frozenset[str] = Field(
        frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"}),
        description="Image formats (Pillow names) accepted; others are 415. In the "
        'environment a JSON list, e.g. \'["PNG","JPEG"]\'.',
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
        1024,
        ge=1,
        description="Most images admitted and not yet answered; beyond it requests are refused "
        "at once with 503 overloaded + Retry-After instead of queueing without bound.",
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
        "it gets images only while every other worker has at least this many waiting (bulk "
        "traffic: /predict/batch, V2 batches), so that single-image traffic, where the event "
        "loop needs its whole core, never competes with it. 0 = every worker alike.",
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
    graceful_shutdown_seconds: float = Field(
        10.0,
        gt=0,
        description="After SIGTERM, how long requests in flight may take to finish before "
        "the server exits anyway (a stalled upload must not block shutdown forever).",
    )

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent_limits(self) -> Self:
        if self.max_batch_files > self.batch_max_queue_images:
            raise ValueError(
                f"max_batch_files ({self.max_batch_files}) must not exceed "
                f"batch_max_queue_images ({self.batch_max_queue_images}): such a batch "
                "could never be queued"
            )
        return self

    @property
    def resolved_preprocess_workers(self) -> int:
        """One worker per core; the one sharing the event loop's core is the overflow worker
        (``overflow_backlog_images``)."""
        return self.preprocess_workers or available_cpus()

    @property
    def resolved_model_path(self) -> Path:
        return resolve_model_path(self.model_path)

    @property
    def resolved_model_card_path(self) -> Path:
        if self.model_card_path is not None:
            return resolve_model_path(self.model_card_path)
        return self.resolved_model_path.with_suffix(".json")
