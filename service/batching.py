"""Micro-batching: merge the images of concurrent requests into one ONNX Runtime call.

Callers ``await submit(images)``; a collector task on the event loop takes whatever is queued
(up to ``max_batch_size`` images, waiting at most ``max_delay_us`` for more), runs it on ONE
dedicated worker thread (never on the event loop), and hands each caller its rows. While a
batch runs, new inputs queue up, so batches grow with load by themselves. The queue is bounded
in images: a full queue refuses at once (Overloaded -> 503 + Retry-After), never grows memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.errors import Overloaded
from service.metrics import Metrics

logger = logging.getLogger("service.batching")

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(slots=True)
class _Pending:
    images: np.ndarray
    future: asyncio.Future[np.ndarray]
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Bounded queue + one inference thread in front of a thread-safe ``predict``."""

    def __init__(
        self,
        predict: Predict,
        *,
        max_batch_size: int = 32,
        max_delay_us: int = 200,
        max_queue_images: int = 1024,
        retry_after_seconds: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_us / 1_000_000
        self.max_queue_images = max_queue_images
        self._retry_after = retry_after_seconds
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def start(self) -> None:
        """Start the collector on the running loop (call from the app's lifespan)."""
        if self._task is not None:
            return
        self._closing = False
        self._wakeup = asyncio.Event()  # bound to this loop: a restarted app gets a fresh one
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digits-infer")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="digits-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop the collector and the worker thread."""
        if self._task is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await self._task
        finally:
            self._task = None
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (n, 10) for float32 images (n, 1, 28, 28), batched with others."""
        count = int(images.shape[0])
        if self._task is None or self._closing:
            raise Overloaded("the inference queue is not running", self._retry_after)
        if self._queued_images + count > self.max_queue_images:
            if self._metrics is not None:
                self._metrics.rejected.labels("overloaded").inc(count)
            raise Overloaded(
                f"inference queue full ({self._queued_images} of {self.max_queue_images} "
                f"images waiting); retry later",
                self._retry_after,
            )
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(images, future))
        self._queued_images += count
        self._wakeup.set()
        return await future

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue:
            head = self._queue[0]
            count = int(head.images.shape[0])
            if batch and size + count > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_images -= count
            if head.future.done():  # the caller went away (client disconnected)
                continue
            batch.append(head)
            size += count
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.max_delay_s > 0 and self._queued_images < self.max_batch_size:
                await asyncio.sleep(self.max_delay_s)
            batch = self._take_batch()
            if batch:
                await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        started = time.monotonic()
        images = batch[0].images if len(batch) == 1 else np.concatenate([p.images for p in batch])
        try:
            probabilities = await loop.run_in_executor(self._executor, self._timed, images)
        except Exception as exc:  # one failed call fails exactly the callers in it
            logger.exception("inference failed for a batch of %d images", images.shape[0])
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        if self._metrics is not None:
            self._metrics.batch_size.observe(images.shape[0])
            for pending in batch:
                self._metrics.queue_wait.observe(started - pending.queued_at)
        offset = 0
        for pending in batch:
            count = pending.images.shape[0]
            if not pending.future.done():
                pending.future.set_result(probabilities[offset : offset + count])
            offset += count

    def _timed(self, images: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        probabilities = self._predict(images)
        if self._metrics is not None:
            self._metrics.inference_duration.observe(time.perf_counter() - started)
        return probabilities
