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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.contract import ModelInfo, ModelSpec
from service.errors import ServiceError
from service.metrics import Metrics
from service.settings import Settings
from service.workers.pool import PoolOptions, TensorResults, WorkerPool
from service.workers.protocol import ImageResults


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
    )


def shadow_spec(settings: Settings) -> ModelSpec | None:
    """The shadow model the workers also open, if one is configured."""
    path = settings.resolved_shadow_model_path
    if path is None:
        return None
    return ModelSpec(
        path=str(path),
        provider=settings.provider,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
    )


def pool_options(settings: Settings, model: ModelSpec | None = None) -> PoolOptions:
    """The worker pool as the settings describe it (``model``: the file to open instead of
    the configured one, e.g. its pinned copy)."""
    return PoolOptions(
        workers=settings.workers_per_front_end,
        model=model or model_spec(settings),
        allowed_formats=settings.allowed_image_formats,
        max_pixels=settings.max_image_pixels,
        timeout_seconds=settings.preprocess_timeout_seconds,
        max_batch_size=settings.batch_max_size,
        max_delay_us=settings.batch_max_delay_us,
        max_queue_images=settings.batch_max_queue_images,
        overflow_backlog_images=settings.overflow_backlog_images,
        retry_after_seconds=settings.retry_after_seconds,
        log_level=settings.log_level,
        shadow_model=shadow_spec(settings),
        shadow_sample_rate=settings.shadow_sample_rate,
    )


class Predictor:
    """Answers for images and tensors, computed by the worker pool it owns; each answer names
    the model that computed it (after a reload, old and new answers may interleave)."""

    def __init__(self, pool: WorkerPool, metrics: Metrics) -> None:
        self._metrics = metrics
        self._statistics = metrics.statistics
        self._refs: dict[str, dict[str, str]] = {}  # sha256 -> the answers' "model" object
        self.model: ModelInfo | None = None  # the one new requests go to
        self.pool = pool

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: Metrics, model: ModelSpec | None = None
    ) -> Predictor:
        return cls(WorkerPool(pool_options(settings, model), metrics), metrics)

    async def start(self) -> ModelInfo:
        """Spawn the workers (on the running loop: replies arrive through it) and wait until
        they have opened the model; what they opened. Raises ModelLoadError."""
        self.model = await self.pool.start()
        return self.model

    def close(self) -> None:
        """Stop the worker processes; what they were still working on fails with 503."""
        self.pool.close()

    def _ref(self, model: ModelInfo | None) -> dict[str, str]:
        """The answers' "model" object for ``model`` (one dict per model, shared)."""
        model = model or self.model
        if model is None:
            return {}
        ref = self._refs.get(model.sha256)
        if ref is None:
            ref = self._refs[model.sha256] = {"name": model.name, "version": model.version}
        return ref

    def _answers(
        self, results: ImageResults, uploads: Sequence[Upload], named: bool
    ) -> list[dict[str, Any]]:
        """One answer or error entry per image of a frame's results, in order; the numpy
        work for all of them at once. Each answer names the model that computed it."""
        probabilities = results.probabilities
        rows, digits, pngs = probabilities.tolist(), probabilities.argmax(1).tolist(), results.pngs
        ref = self._ref(results.model)
        entries: list[dict[str, Any]] = []
        for index, upload in enumerate(uploads):
            error = results.errors.get(index)
            if error is not None:
                entries.append({"filename": upload.filename, "error": error.to_dict()})
                continue
            digit = digits[index]
            confidence = rows[index][digit]
            self._metrics.observe_prediction(digit, confidence)
            answer: dict[str, Any] = {
                "digit": digit,
                "confidence": confidence,
                "probabilities": rows[index],
                "model": ref,
            }
            if pngs is not None:
                answer["normalized_image"] = base64.b64encode(pngs[index]).decode("ascii")
            if named:
                answer["filename"] = upload.filename
            entries.append(answer)
        return entries

    async def predict(self, upload: Upload, include_image: bool = False) -> dict[str, Any]:
        """The answer for one image; raises ServiceError for bad input or overload."""
        started = time.perf_counter()
        try:
            results = await self.pool.classify(upload.data, include_image)
        except ServiceError:
            self._statistics.failed(self.model, time.perf_counter() - started)
            raise
        error = results.errors.get(0)
        if error is not None:
            self._statistics.failed(results.model, time.perf_counter() - started)
            raise error
        computed = time.perf_counter()
        answer = self._answers(results, [upload], named=False)[0]
        self._record(started, computed, [results])
        return answer

    async def predict_batch(
        self, uploads: list[Upload], include_image: bool = False
    ) -> list[dict[str, Any]]:
        """One entry per upload in order; a bad image fails its own entry only.

        The pool answers the images a frame at a time (a worker's model call's worth); the
        frames' futures are awaited in order.
        """
        started = time.perf_counter()
        try:
            chunks = self.pool.classify_many([upload.data for upload in uploads], include_image)
        except ServiceError:
            self._statistics.failed(self.model, time.perf_counter() - started)
            raise
        entries: list[dict[str, Any]] = []
        frames: list[ImageResults] = []
        building = 0.0  # seconds spent building answers, between the waits
        awaited = 0
        try:
            for count, future in chunks:
                awaited += 1
                batch = uploads[len(entries) : len(entries) + count]
                try:
                    results = await future
                except ServiceError as exc:  # the whole frame failed (shutdown, restarts)
                    entries += [{"filename": u.filename, "error": exc.to_dict()} for u in batch]
                    continue
                frames.append(results)
                answered = time.perf_counter()
                entries += self._answers(results, batch, named=True)
                building += time.perf_counter() - answered
        finally:
            _abandon([future for _, future in chunks[awaited:]])  # the request failed
        self._record(started, time.perf_counter() - building, frames)
        return entries

    async def probabilities(self, images: np.ndarray) -> TensorResults:
        """(n, 10) for float32 images (n, 1, 28, 28) in MNIST convention (the V2 endpoint),
        with the model that computed them."""
        started = time.perf_counter()
        try:
            result = await self.pool.classify_tensor(images)
        except ServiceError:
            self._statistics.failed(self.model, time.perf_counter() - started)
            raise
        done = time.perf_counter()
        timings = (result.wait_s, 0.0, result.infer_s)
        self._statistics.succeeded(result.model, done - started, timings, 0.0)
        return result

    def _record(self, started: float, computed: float, frames: list[ImageResults]) -> None:
        """One successful request in the statistics (its answers are built by now): the
        means over its answered images of their wait, decoding and model call."""
        done = time.perf_counter()
        answered, wait, decode, infer = 0, 0.0, 0.0, 0.0
        for results in frames:
            errors, waits = results.errors, results.waits
            for index, seconds in enumerate(results.seconds):
                if index not in errors:
                    answered, decode, wait = answered + 1, decode + seconds, wait + waits[index]
                    infer += results.call_s
        count = answered or 1
        model = frames[0].model if frames else self.model
        timings = (wait / count, decode / count, infer / count)
        self._statistics.succeeded(model, done - started, timings, done - computed)


def _abandon(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Let go of answers nobody will read: cancel the pending ones and mark the failed ones
    as seen (asyncio logs an error for a future whose exception is never retrieved)."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()
