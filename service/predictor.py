"""Transport-free prediction logic: bytes in, answer dicts out (routes only translate).

Decode + normalisation run in the thread pool (Pillow and numpy release the GIL for the heavy
parts), inference goes through the micro-batcher's single thread, and the answer is a plain
dict so the route can serialise it without FastAPI's jsonable_encoder.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

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

    async def predict(self, upload: Upload, include_image: bool = False) -> dict[str, Any]:
        """The answer for one image; raises ServiceError for bad input or overload."""
        image = await run_in_threadpool(self._preprocess, upload.data)
        probabilities = await self._batcher.submit(image[np.newaxis, np.newaxis])
        return self._answer(probabilities[0], image if include_image else None)

    async def predict_batch(
        self, uploads: list[Upload], include_image: bool = False
    ) -> list[dict[str, Any]]:
        """One entry per upload in order; a bad image fails its own entry only."""
        prepared = await run_in_threadpool(self._preprocess_many, uploads)
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
