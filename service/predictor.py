"""Transport-free prediction logic: bytes in, answer dicts out (routes only translate).

Decode + normalisation run in a small pool of worker threads sized to the cores (Pillow's
decoders, OpenCV and BLAS release the GIL for the pixel work). A worker hands its image
straight to the micro-batcher's queue, and the inference thread answers the request's future:
the event loop's share of a /predict is one pool submission and one future, with the queue
room reserved up front so overload is refused before any decoding. A /predict/batch is cut
into one chunk per worker, normalised in parallel. Answers are plain dicts so the route can
serialise them without FastAPI's jsonable_encoder.
"""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.batching import MicroBatcher
from service.errors import ServiceError
from service.metrics import Metrics
from service.model import ModelInfo
from service.preprocessing import encode_png, preprocess_image
from service.settings import Settings


@dataclass(frozen=True)
class Upload:
    """One image as received: its bytes and, for batch entries, the client's file name."""

    data: bytes
    filename: str | None = None


class Predictor:
    def __init__(
        self, settings: Settings, info: ModelInfo, batcher: MicroBatcher, metrics: Metrics
    ) -> None:
        self._formats = settings.allowed_image_formats
        self._max_pixels = settings.max_image_pixels
        self._batcher = batcher
        self._metrics = metrics
        self._model_ref = {"name": info.name, "version": info.version}
        self._workers = settings.resolved_preprocess_threads
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="digits-prep")

    def close(self) -> None:
        """Stop the worker threads (after the batcher has drained)."""
        self._pool.shutdown(wait=True)

    def _preprocess(self, data: bytes) -> np.ndarray:
        started = time.perf_counter()
        try:
            return preprocess_image(
                data, allowed_formats=self._formats, max_pixels=self._max_pixels
            )
        finally:  # refused images count too: slow hostile inputs must show up here
            self._metrics.preprocess_duration.observe(time.perf_counter() - started)

    def _preprocess_many(self, uploads: list[Upload]) -> list[np.ndarray | ServiceError]:
        results: list[np.ndarray | ServiceError] = []
        for upload in uploads:
            try:
                results.append(self._preprocess(upload.data))
            except ServiceError as exc:
                results.append(exc)
        return results

    def _answer(self, probabilities: np.ndarray, image: np.ndarray | None) -> dict[str, Any]:
        digit = int(probabilities.argmax())
        confidence = float(probabilities[digit])
        self._metrics.observe_prediction(digit, confidence)
        answer: dict[str, Any] = {
            "digit": digit,
            "confidence": confidence,
            "probabilities": probabilities.tolist(),
            "model": self._model_ref,
        }
        if image is not None:
            answer["normalized_image"] = base64.b64encode(encode_png(image)).decode("ascii")
        return answer

    def _prepare_and_queue(
        self, data: bytes, future: asyncio.Future[np.ndarray], seen: list[np.ndarray] | None
    ) -> None:
        """Worker thread: decode + normalise, then queue for inference (room was reserved)."""
        try:
            image = self._preprocess(data)
        except BaseException as exc:  # a bad image, or a bug: the caller gets it either way
            self._batcher.release(1)
            future.get_loop().call_soon_threadsafe(_fail, future, exc)
            return
        if seen is not None:  # the caller wants the 28x28 image back
            seen.append(image)
        self._batcher.enqueue(image[np.newaxis, np.newaxis], future)

    async def predict(self, upload: Upload, include_image: bool = False) -> dict[str, Any]:
        """The answer for one image; raises ServiceError for bad input or overload."""
        self._batcher.reserve(1)  # 503 at once when full, before any decoding
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        seen: list[np.ndarray] | None = [] if include_image else None
        self._pool.submit(self._prepare_and_queue, upload.data, future, seen)
        probabilities = await future
        return self._answer(probabilities[0], seen[0] if seen else None)

    async def predict_batch(
        self, uploads: list[Upload], include_image: bool = False
    ) -> list[dict[str, Any]]:
        """One entry per upload in order; a bad image fails its own entry only."""
        loop = asyncio.get_running_loop()
        step = -(-len(uploads) // self._workers)  # one chunk per worker, in parallel
        chunks = [uploads[start : start + step] for start in range(0, len(uploads), step)]
        prepared = [
            item
            for part in await asyncio.gather(
                *(loop.run_in_executor(self._pool, self._preprocess_many, c) for c in chunks)
            )
            for item in part
        ]
        good = [item for item in prepared if isinstance(item, np.ndarray)]
        rows = iter(await self._batcher.submit(np.stack(good)[:, np.newaxis]) if good else [])
        entries: list[dict[str, Any]] = []
        for upload, item in zip(uploads, prepared, strict=True):
            if isinstance(item, ServiceError):
                entries.append({"filename": upload.filename, "error": item.to_dict()})
                continue
            answer = self._answer(next(rows), item if include_image else None)
            entries.append({**answer, "filename": upload.filename})
        return entries


def _fail(future: asyncio.Future[np.ndarray], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
