"""Transport-free prediction logic: bytes in, answer dicts out (routes only translate).

Process layout: the event loop parses HTTP and nothing else; decoding, normalisation and the
model run in a pool of spawned worker processes (service/workers/), each batching what
arrives together into one ONNX Runtime call. A /predict is admitted (or refused with 503 at
once), sent to the least busy worker, and answered when its probabilities come back; a
/predict/batch sends all its images at once, spread over the workers. Answers are plain
dicts so the route can serialise them without FastAPI's jsonable_encoder.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.contract import ModelInfo, ModelSpec
from service.errors import NotADigit, ServiceError
from service.metrics import Metrics
from service.settings import Settings
from service.workers.pool import PoolOptions, Result, WorkerPool


@dataclass(frozen=True)
class Upload:
    """One image as received: its bytes and, for batch entries, the client's file name."""

    data: bytes
    filename: str | None = None


def model_spec(settings: Settings) -> ModelSpec:
    """The configured model, as the server and every worker open it."""
    return ModelSpec(
        path=str(settings.resolved_model_path),
        provider=settings.provider,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        card_path=str(settings.resolved_model_card_path),
        not_a_digit_threshold=settings.not_a_digit_threshold,
    )


def pool_options(settings: Settings) -> PoolOptions:
    """The worker pool as the settings describe it."""
    return PoolOptions(
        workers=settings.resolved_preprocess_workers,
        model=model_spec(settings),
        allowed_formats=settings.allowed_image_formats,
        max_pixels=settings.max_image_pixels,
        timeout_seconds=settings.preprocess_timeout_seconds,
        max_batch_size=settings.batch_max_size,
        max_delay_us=settings.batch_max_delay_us,
        max_queue_images=settings.batch_max_queue_images,
        overflow_backlog_images=settings.overflow_backlog_images,
        retry_after_seconds=settings.retry_after_seconds,
        log_level=settings.log_level,
    )


class Predictor:
    """Answers for images and tensors, computed by the worker pool it owns."""

    def __init__(self, pool: WorkerPool, metrics: Metrics) -> None:
        self._metrics = metrics
        self._model_ref: dict[str, str] = {}
        self.pool = pool

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> Predictor:
        return cls(WorkerPool(pool_options(settings), metrics), metrics)

    async def start(self) -> ModelInfo:
        """Spawn the workers (on the running loop: replies arrive through it) and wait until
        they have opened the model; what they opened. Raises ModelLoadError."""
        info = await self.pool.start()
        self._model_ref = {"name": info.name, "version": info.version}
        return info

    def close(self) -> None:
        """Stop the worker processes; what they were still working on fails with 503."""
        self.pool.close()

    def _answer(self, probabilities: np.ndarray, png: bytes | None) -> dict[str, Any]:
        digit = int(probabilities.argmax())
        confidence = float(probabilities[digit])
        self._metrics.observe_prediction(digit, confidence)
        answer: dict[str, Any] = {
            "digit": digit,
            "confidence": confidence,
            "probabilities": probabilities.tolist(),
            "model": self._model_ref,
        }
        if png is not None:
            answer["normalized_image"] = base64.b64encode(png).decode("ascii")
        return answer

    async def predict(self, upload: Upload, include_image: bool = False) -> dict[str, Any]:
        """The answer for one image; raises ServiceError for bad input or overload."""
        try:
            result = await self.pool.classify(upload.data, include_image)
        except NotADigit:
            self._metrics.rejected_not_a_digit.inc()
            raise
        return self._answer(result.probabilities[0], result.png)

    async def predict_batch(
        self, uploads: list[Upload], include_image: bool = False
    ) -> list[dict[str, Any]]:
        """One entry per upload in order; a bad image fails its own entry only.

        The futures are awaited one by one rather than through ``asyncio.gather``: they are
        answered a worker batch at a time, so most are done when their turn comes, and
        gather's callback per future costs the event loop more (docs/performance.md).
        """
        futures = self.pool.classify_many((upload.data for upload in uploads), include_image)
        entries: list[dict[str, Any]] = []
        try:
            for upload, future in zip(uploads, futures, strict=True):
                try:
                    result = await future
                except ServiceError as exc:
                    if isinstance(exc, NotADigit):
                        self._metrics.rejected_not_a_digit.inc()
                    entries.append({"filename": upload.filename, "error": exc.to_dict()})
                    continue
                answer = self._answer(result.probabilities[0], result.png)
                entries.append({**answer, "filename": upload.filename})
        finally:
            _abandon(futures[len(entries) :])  # the request failed (cancelled, a bug)
        return entries

    async def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(n, 10) for float32 images (n, 1, 28, 28) in MNIST convention (the V2 endpoint)."""
        return (await self.pool.classify_tensor(images)).probabilities


def _abandon(futures: list[asyncio.Future[Result]]) -> None:
    """Let go of answers nobody will read: cancel the pending ones and mark the failed ones
    as seen (asyncio logs an error for a future whose exception is never retrieved)."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()
