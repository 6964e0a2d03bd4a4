"""Transport-free prediction logic: bytes in, answer dicts out (routes only translate).

Process layout: the event loop parses HTTP; decode + normalisation run in a pool of spawned
worker processes (service/workers.py, one per core by default), because that work is mostly
Python/numpy glue that would hold the event loop's GIL; ONNX Runtime runs on the
micro-batcher's inference thread. A /predict reserves queue room up front (overload is refused
before any decoding), sends the bytes to the least busy worker, and when the 28x28 image comes
back, queues it for inference from the event loop: the loop's share is two frames and two
futures. A /predict/batch sends all its images at once, spread over the workers. Answers are
plain dicts so the route can serialise them without FastAPI's jsonable_encoder.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.batching import MicroBatcher
from service.errors import ServiceError
from service.metrics import Metrics
from service.model import ModelInfo
from service.preprocessing import encode_png
from service.settings import Settings
from service.workers import PreprocessPool


@dataclass(frozen=True)
class Upload:
    """One image as received: its bytes and, for batch entries, the client's file name."""

    data: bytes
    filename: str | None = None


class Predictor:
    def __init__(
        self, settings: Settings, info: ModelInfo, batcher: MicroBatcher, metrics: Metrics
    ) -> None:
        self._batcher = batcher
        self._metrics = metrics
        self._model_ref = {"name": info.name, "version": info.version}
        self.pool = PreprocessPool(
            workers=settings.resolved_preprocess_workers,
            allowed_formats=settings.allowed_image_formats,
            max_pixels=settings.max_image_pixels,
            timeout_seconds=settings.preprocess_timeout_seconds,
            observe=metrics.preprocess_duration.observe,  # refused images count too
        )

    async def start(self) -> None:
        """Spawn the preprocessing workers (on the running loop: replies arrive through it)."""
        await self.pool.start()

    def close(self) -> None:
        """Stop the worker processes (after the batcher has drained)."""
        self.pool.close()

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

    async def predict(self, upload: Upload, include_image: bool = False) -> dict[str, Any]:
        """The answer for one image; raises ServiceError for bad input or overload."""
        self._batcher.reserve(1)  # 503 at once when full, before any decoding
        try:
            image = await self.pool.preprocess(upload.data)
        except BaseException:  # a bad image, a dead worker, or the client went away
            self._batcher.release(1)
            raise
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._batcher.enqueue(image[np.newaxis, np.newaxis], future)
        probabilities = await future
        return self._answer(probabilities[0], image if include_image else None)

    async def predict_batch(
        self, uploads: list[Upload], include_image: bool = False
    ) -> list[dict[str, Any]]:
        """One entry per upload in order; a bad image fails its own entry only."""
        futures = self.pool.preprocess_many(upload.data for upload in uploads)
        prepared = await asyncio.gather(*futures, return_exceptions=True)
        for item in prepared:
            if not isinstance(item, np.ndarray | ServiceError):
                raise item  # not the image's fault (cancelled, a bug): the whole request fails
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
