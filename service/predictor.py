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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service.answers import Answers, RecentAnswers
from service.contract import ModelInfo, ModelSpec
from service.errors import ServiceError
from service.metrics import Metrics
from service.settings import Settings
from service.workers import protocol as wire
from service.workers.explaining import ExplainTurns
from service.workers.pool import PoolOptions, WorkerPool
from service.workers.protocol import ImageResults
from service.workers.results import Chunk, TensorResults


class FrameTracing(Protocol):
    """The trace of the current request, as the frames see it (service/tracing/frames.py)."""

    def frame_context(self, images: int, model: dict[str, str]) -> bytes | None:
        """The trace context for the frames of a request of ``images`` images, or None when
        the request is not being recorded."""
        ...

    def record(self, results: ImageResults, images: int) -> None:
        """The spans of a frame of ``images`` images, from the worker's timings."""
        ...


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
        max_batch_pixels=settings.max_batch_pixels,
        timeout_seconds=settings.preprocess_timeout_seconds,
        max_batch_size=settings.batch_max_size,
        max_delay_us=settings.batch_max_delay_us,
        max_queue_images=settings.batch_max_queue_images,
        overflow_backlog_images=settings.overflow_backlog_images,
        overflow_wait_seconds=settings.overflow_wait_ms / 1000,
        retry_after_seconds=settings.retry_after_seconds,
        log_level=settings.log_level,
        shadow_model=shadow_spec(settings),
        shadow_sample_rate=settings.shadow_sample_rate,
    )


class Predictor:
    """Answers for images and tensors, computed by the worker pool it owns; each answer names
    the model that computed it (after a reload, old and new answers may interleave).

    ``recent``: with feedback on, each answer's normalised input is kept there for a while,
    so that a correction can name it by request id (the worker sends the input's 8-bit
    pixels with every answer then). ``tracing``: with tracing on, the frames carry the
    request's trace context and the worker's timings become spans. Both None by default: the
    answers' path does nothing for them.
    """

    def __init__(
        self,
        pool: WorkerPool,
        metrics: Metrics,
        recent: RecentAnswers | None = None,
        tracing: FrameTracing | None = None,
    ) -> None:
        self._statistics = metrics.statistics
        self._answers = Answers(metrics, recent)
        self._tracing = tracing
        self._always = wire.WITH_PIXELS if recent is not None else 0
        self.model: ModelInfo | None = None  # the one new requests go to
        self.pool = pool
        self._explaining = ExplainTurns(pool.options.workers)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: Metrics,
        model: ModelSpec | None = None,
        recent: RecentAnswers | None = None,
        tracing: FrameTracing | None = None,
    ) -> Predictor:
        pool = WorkerPool(pool_options(settings, model), metrics)
        return cls(pool, metrics, recent, tracing)

    async def start(self) -> ModelInfo:
        """Spawn the workers (on the running loop: replies arrive through it) and wait until
        they have opened the model; what they opened. Raises ModelLoadError."""
        self.model = await self.pool.start()
        return self.model

    def close(self) -> None:
        """Stop the worker processes; what they were still working on fails with 503."""
        self.pool.close()

    def _flags(self, include_image: bool, explain: bool) -> int:
        flags = self._always
        if include_image:
            flags |= wire.WITH_IMAGE
        if explain:
            flags |= wire.EXPLAIN
        return flags

    def _trace(self, images: int) -> bytes | None:
        tracing = self._tracing
        return tracing.frame_context(images, self._answers.ref(self.model)) if tracing else None

    async def predict(
        self,
        upload: Upload,
        include_image: bool = False,
        explain: bool = False,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The answer for one image; raises ServiceError for bad input or overload (an image
        refused after the model ran carries its explanation and input in ``details``).
        ``request_id``: what a correction names the answer by (feedback on)."""
        started = time.perf_counter()
        flags, trace = self._flags(include_image, explain), self._trace(1)
        try:
            if explain:
                results = await self._explaining.run(
                    lambda: self.pool.classify(upload.data, flags, trace)
                )
            else:
                results = await self.pool.classify(upload.data, flags, trace)
        except ServiceError:
            self._statistics.failed(self.model, time.perf_counter() - started)
            raise
        if results.timing is not None:
            self._tracing.record(results, 1)  # type: ignore[union-attr]
        computed = time.perf_counter()
        answer = self._answers.build(results, [upload], False, include_image, request_id)[0]
        error = results.errors.get(0)
        if error is not None:
            self._statistics.failed(results.model, time.perf_counter() - started)
            error.details = {k: v for k, v in answer.items() if k not in ("filename", "error")}
            raise error
        self._record(started, computed, [results])
        return answer

    async def predict_batch(
        self,
        uploads: list[Upload],
        include_image: bool = False,
        explain: bool = False,
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """One entry per upload in order; a bad image fails its own entry only.

        The pool answers the images a frame at a time (a worker's model call's worth); the
        frames' futures are awaited in order.
        """
        started = time.perf_counter()
        flags, trace = self._flags(include_image, explain), self._trace(len(uploads))
        try:
            images = [upload.data for upload in uploads]
            if explain:  # an image a frame, each in its turn (service/workers/explaining.py)
                self.pool.check_room(len(images))  # 503 for the whole request, as below
                chunks = [Chunk(1, self._explained(image, flags, trace)) for image in images]
            else:
                chunks = self.pool.classify_many(images, flags, trace)
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
                first = len(entries)
                batch = uploads[first : first + count]
                try:
                    results = await future
                except ServiceError as exc:  # the whole frame failed (shutdown, restarts)
                    entries += [{"filename": u.filename, "error": exc.to_dict()} for u in batch]
                    continue
                if results.timing is not None:
                    self._tracing.record(results, count)  # type: ignore[union-attr]
                frames.append(results)
                answered = time.perf_counter()
                entries += self._answers.build(
                    results, batch, True, include_image, request_id, first
                )
                building += time.perf_counter() - answered
        finally:
            _abandon([future for _, future in chunks[awaited:]])  # the request failed
        self._record(started, time.perf_counter() - building, frames)
        return entries

    def _explained(self, data: bytes, flags: int, trace: bytes | None) -> asyncio.Future[Any]:
        return self._explaining.start(lambda: self.pool.classify(data, flags, trace))

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
        self._answers.observe_tensors(result.probabilities)
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
