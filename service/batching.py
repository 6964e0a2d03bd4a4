"""Micro-batching: merge the images of concurrent requests into one ONNX Runtime call.

Callers ``await submit(images)``. The queue and the batch collector live on ONE dedicated
inference thread, not on the event loop: it takes whatever is queued (up to
``max_batch_size`` images, waiting at most ``max_delay_us`` for more), runs the model, and
hands every caller of the batch its rows with a single ``call_soon_threadsafe``. The event
loop's whole share of a request is therefore: reserve room, append, one future. While a batch
runs, new inputs queue up, so batches grow with load by themselves.

The queue is bounded in images and the room is reserved when a request is admitted, before
its image is even decoded (``reserve``; the predictor has it decoded in a worker process and
then ``enqueue``s it): a full service refuses at once (Overloaded -> 503 + Retry-After)
instead of growing memory or latency without bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.errors import Overloaded
from service.metrics import Metrics

logger = logging.getLogger("service.batching")

Predict = Callable[[np.ndarray], np.ndarray]
_STOP_POLL_S = 0.05


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
        self._queued = 0  # images in the queue
        self._reserved = 0  # images admitted and not yet taken into a batch (queued or not)
        self._ready = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @property
    def queued_images(self) -> int:
        return self._reserved

    def start(self) -> None:
        """Start the inference thread; answers go to the running loop (the app's lifespan)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="digits-infer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Finish what is queued, then stop the inference thread."""
        thread = self._thread
        if thread is None:
            return
        with self._ready:
            self._closing = True
            self._ready.notify()
        while thread.is_alive():  # the last answers arrive through this loop: keep it running
            await asyncio.sleep(_STOP_POLL_S)
        self._thread = None
        await asyncio.sleep(0)  # deliver the answers of the last batch

    def reserve(self, count: int) -> None:
        """Admit ``count`` images or raise Overloaded at once (call on the event loop)."""
        with self._ready:
            if self._thread is None or self._closing:
                raise Overloaded("the inference queue is not running", self._retry_after)
            if self._reserved + count > self.max_queue_images:
                waiting = self._reserved
            else:
                self._reserved += count
                return
        if self._metrics is not None:
            self._metrics.rejected.labels("overloaded").inc(count)
        raise Overloaded(
            f"inference queue full ({waiting} of {self.max_queue_images} images waiting); "
            "retry later",
            self._retry_after,
        )

    def release(self, count: int) -> None:
        """Give back reserved room whose images never came (refused by preprocessing)."""
        with self._ready:
            self._reserved -= count

    def enqueue(self, images: np.ndarray, future: asyncio.Future[np.ndarray]) -> None:
        """Queue reserved images (from any thread); ``future`` gets their (n, 10) rows."""
        with self._ready:
            self._queue.append(_Pending(images, future))
            self._queued += int(images.shape[0])
            self._ready.notify()

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (n, 10) for float32 images (n, 1, 28, 28), batched with others."""
        self.reserve(int(images.shape[0]))
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.enqueue(images, future)
        return await future

    def _take_batch(self) -> list[_Pending]:
        """Called with the lock held."""
        batch: list[_Pending] = []
        size = 0
        while self._queue:
            head = self._queue[0]
            count = int(head.images.shape[0])
            if batch and size + count > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued -= count
            self._reserved -= count
            if head.future.done():  # the caller went away (client disconnected)
                continue
            batch.append(head)
            size += count
        return batch

    def _next_batch(self) -> list[_Pending] | None:
        """Block until a batch is due; None once closing and drained."""
        with self._ready:
            while not self._queue:
                if self._closing:
                    return None
                self._ready.wait()
            if self.max_delay_s > 0 and self._queued < self.max_batch_size:
                deadline = time.monotonic() + self.max_delay_s
                while self._queued < self.max_batch_size and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._ready.wait(left):
                        break
            return self._take_batch()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        images = batch[0].images if len(batch) == 1 else np.concatenate([p.images for p in batch])
        try:
            probabilities = self._predict(images)
        except Exception as exc:  # one failed call fails exactly the callers in it
            logger.exception("inference failed for a batch of %d images", images.shape[0])
            self._deliver(_fail, batch, exc)
            return
        if self._metrics is not None:
            self._metrics.inference_duration.observe(time.monotonic() - started)
            self._metrics.batch_size.observe(images.shape[0])
            for pending in batch:
                self._metrics.queue_wait.observe(started - pending.queued_at)
        self._deliver(_answer, batch, probabilities)

    def _deliver(self, how: Callable[..., None], batch: list[_Pending], value: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(how, batch, value)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            logger.debug("event loop closed; dropping the answers of %d callers", len(batch))


def _answer(batch: list[_Pending], probabilities: np.ndarray) -> None:
    offset = 0
    for pending in batch:
        count = pending.images.shape[0]
        if not pending.future.done():
            pending.future.set_result(probabilities[offset : offset + count])
        offset += count


def _fail(batch: list[_Pending], exc: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)
