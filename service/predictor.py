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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from service.contract import ModelInfo, ModelSpec
from service.errors import ServiceError
from service.explanations.occlusion import METHOD, PARAMETERS
from service.logs import request_id
from service.metrics import Metrics
from service.settings import Settings
from service.workers import protocol as wire
from service.workers.extras import Explanations
from service.workers.pool import PoolOptions, WorkerPool
from service.workers.protocol import ImageResults


class RecentAnswers(Protocol):
    """Where answers wait for a correction (service/feedback/recent.py)."""

    def remember(
        self,
        request_id: str | None,
        index: int,
        pixels: bytes,
        predicted: int | str,
        confidence: float | None,
        model: dict[str, str],
    ) -> None:
        """Keep ``pixels`` (what the model saw, 28x28 8-bit) of image ``index`` of request
        ``request_id``, answered ``predicted`` (a digit, or the code of the error it was
        refused with) by ``model`` (name, version)."""
        ...


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
    )


def pool_options(settings: Settings) -> PoolOptions:
    """The worker pool as the settings describe it."""
    return PoolOptions(
        workers=settings.workers_per_front_end,
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
    """Answers for images and tensors, computed by the worker pool it owns.

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
        self._metrics = metrics
        self._model_ref: dict[str, str] = {}
        self._recent = recent
        self._tracing = tracing
        self._always = wire.WITH_PIXELS if recent is not None else 0
        self.pool = pool

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: Metrics,
        recent: RecentAnswers | None = None,
        tracing: FrameTracing | None = None,
    ) -> Predictor:
        return cls(WorkerPool(pool_options(settings), metrics), metrics, recent, tracing)

    async def start(self) -> ModelInfo:
        """Spawn the workers (on the running loop: replies arrive through it) and wait until
        they have opened the model; what they opened. Raises ModelLoadError."""
        info = await self.pool.start()
        self._model_ref = {"name": info.name, "version": info.version}
        return info

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

    def _answers(
        self,
        results: ImageResults,
        uploads: Sequence[Upload],
        named: bool,
        include_image: bool,
        first: int = 0,
    ) -> list[dict[str, Any]]:
        """One answer or error entry per image of a frame's results, in order; the numpy
        work for all of them at once. ``first``: the first image's position in its request."""
        probabilities = results.probabilities
        rows, digits, pngs = probabilities.tolist(), probabilities.argmax(1).tolist(), results.pngs
        inputs = results.pixels
        explained = results.explanations
        values = _rounded(explained.maps) if explained is not None else None
        entries: list[dict[str, Any]] = []
        for index, upload in enumerate(uploads):
            digit = digits[index]
            answer: dict[str, Any]
            confidence: float | None = None
            error = results.errors.get(index)
            if error is not None:
                answer = {"filename": upload.filename, "error": error.to_dict()}
            else:
                confidence = rows[index][digit]
                self._metrics.observe_prediction(digit, confidence)
                answer = {
                    "digit": digit,
                    "confidence": confidence,
                    "probabilities": rows[index],
                    "model": self._model_ref,
                }
            png = pngs[index] if pngs is not None else b""
            if png and include_image:
                answer["normalized_image"] = base64.b64encode(png).decode("ascii")
            if values is not None and explained.overlays[index]:  # type: ignore[union-attr]
                answer["explanation"] = _explanation(explained, values, index, digit)  # type: ignore[arg-type]
            if inputs is not None and inputs[index] is not None:
                predicted = digit if error is None else error.code
                self._recent.remember(  # type: ignore[union-attr]
                    request_id.get(),
                    first + index,
                    inputs[index],
                    predicted,
                    confidence,
                    self._model_ref,
                )
            if named and error is None:
                answer["filename"] = upload.filename
            entries.append(answer)
        return entries

    async def predict(
        self, upload: Upload, include_image: bool = False, explain: bool = False
    ) -> dict[str, Any]:
        """The answer for one image; raises ServiceError for bad input or overload (an image
        refused after the model ran carries its explanation and input in ``details``)."""
        tracing = self._tracing
        trace = tracing.frame_context(1, self._model_ref) if tracing is not None else None
        results = await self.pool.classify(upload.data, self._flags(include_image, explain), trace)
        if results.timing is not None:
            tracing.record(results, 1)  # type: ignore[union-attr]
        answer = self._answers(results, [upload], False, include_image)[0]
        error = results.errors.get(0)
        if error is not None:
            error.details = {k: v for k, v in answer.items() if k not in ("filename", "error")}
            raise error
        return answer

    async def predict_batch(
        self, uploads: list[Upload], include_image: bool = False, explain: bool = False
    ) -> list[dict[str, Any]]:
        """One entry per upload in order; a bad image fails its own entry only.

        The pool answers the images a frame at a time (a worker's model call's worth); the
        frames' futures are awaited in order.
        """
        tracing = self._tracing
        trace = (
            tracing.frame_context(len(uploads), self._model_ref) if tracing is not None else None
        )
        chunks = self.pool.classify_many(
            [upload.data for upload in uploads], self._flags(include_image, explain), trace
        )
        entries: list[dict[str, Any]] = []
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
                    tracing.record(results, count)  # type: ignore[union-attr]
                entries += self._answers(results, batch, True, include_image, first)
        finally:
            _abandon([future for _, future in chunks[awaited:]])  # the request failed
        return entries

    async def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(n, 10) for float32 images (n, 1, 28, 28) in MNIST convention (the V2 endpoint)."""
        return await self.pool.classify_tensor(images)


def _rounded(maps: np.ndarray) -> list[Any]:
    """The maps as nested lists of floats with 5 decimals: a probability drop is read to
    1e-5, and the JSON stays a third of full float32 precision's size."""
    return np.round(maps.astype(np.float64), 5).tolist()  # type: ignore[no-any-return]


def _explanation(
    explained: Explanations, values: list[Any], index: int, target: int
) -> dict[str, Any]:
    return {
        "method": METHOD,
        "parameters": PARAMETERS,
        "target": target,
        "values": values[index],
        "overlay": base64.b64encode(explained.overlays[index]).decode("ascii"),
    }


def _abandon(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Let go of answers nobody will read: cancel the pending ones and mark the failed ones
    as seen (asyncio logs an error for a future whose exception is never retrieved)."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()
