"""The micro-batcher: merging, ordering, the bounded queue and draining on stop."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.batching import MicroBatcher
from service.errors import Overloaded
from service.metrics import Metrics


class Recorder:
    """A fake model that records batch sizes and the thread it ran on."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.threads: set[str] = set()
        self.delay = delay

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(images.shape[0])
        self.threads.add(threading.current_thread().name)
        if self.delay:
            threading.Event().wait(self.delay)
        # Each row's answer encodes its input so the test can check the split.
        return np.repeat(images.reshape(images.shape[0], -1)[:, :1], 10, axis=1)


def images(value: float, count: int = 1) -> np.ndarray:
    return np.full((count, 1, 28, 28), value, dtype=np.float32)


def test_concurrent_callers_share_batches_and_get_their_own_rows() -> None:
    model = Recorder(delay=0.01)

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=8, max_delay_us=2000, metrics=Metrics())
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(images(i, 1 + i % 2)) for i in range(12)))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    for i, result in enumerate(results):
        assert result.shape == (1 + i % 2, 10) and np.all(result == i)
    assert sum(model.batches) == sum(1 + i % 2 for i in range(12))
    assert len(model.batches) < 12 and max(model.batches) <= 8
    assert model.threads and all(name.startswith("digits-infer") for name in model.threads)


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    model = Recorder(delay=0.2)
    metrics = Metrics()

    async def scenario() -> None:
        batcher = MicroBatcher(
            model, max_batch_size=2, max_delay_us=0, max_queue_images=4, metrics=metrics
        )
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(images(1, 2)))
        await asyncio.sleep(0.05)  # the first batch is now inside the model
        queued = asyncio.ensure_future(batcher.submit(images(2, 4)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as caught:
            await batcher.submit(images(3, 1))
        assert caught.value.status_code == 503 and caught.value.headers["Retry-After"] == "1"
        assert "4 of 4 images" in caught.value.message
        await asyncio.gather(running, queued)
        await batcher.stop()

    asyncio.run(scenario())
    assert metrics.rejected.labels("overloaded")._value.get() == 1


def test_stop_answers_what_was_queued() -> None:
    model = Recorder(delay=0.02)

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_size=1, max_delay_us=0)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(images(i))) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.stop()
        return [task.result() for task in pending]

    assert [int(r[0, 0]) for r in asyncio.run(scenario())] == [0, 1, 2, 3, 4]


def test_a_failing_model_fails_only_its_batch() -> None:
    calls = {"n": 0}

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return np.zeros((batch.shape[0], 10), dtype=np.float32)

    async def scenario() -> None:
        batcher = MicroBatcher(flaky, max_batch_size=1, max_delay_us=0)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(images(0))
        assert (await batcher.submit(images(1))).shape == (1, 10)
        await batcher.stop()

    asyncio.run(scenario())
