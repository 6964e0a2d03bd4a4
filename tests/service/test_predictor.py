"""Predictor.predict_batch over a stand-in pool: per-entry errors, and a failed request
leaves no answer behind (nothing pending, no "exception was never retrieved")."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidImage
from service.metrics import Metrics
from service.predictor import Predictor, Upload
from service.workers.pool import Result


class StandInPool:
    """Hands out the futures it was given, as WorkerPool.classify_many would."""

    def __init__(self, futures: list[asyncio.Future[Result]]) -> None:
        self.futures = futures

    def classify_many(self, items: Iterable[bytes], with_image: bool = False) -> list[Any]:
        assert len(list(items)) == len(self.futures)
        return self.futures


def _predictor(futures: list[asyncio.Future[Result]]) -> Predictor:
    return Predictor(StandInPool(futures), Metrics())  # type: ignore[arg-type]


def _answered(loop: asyncio.AbstractEventLoop, value: Result | Exception) -> asyncio.Future[Result]:
    future: asyncio.Future[Result] = loop.create_future()
    if isinstance(value, Exception):
        future.set_exception(value)
    else:
        future.set_result(value)
    return future


PROBABILITIES = np.eye(10, dtype=np.float32)[[3]]


def test_each_entry_gets_its_answer_or_its_error() -> None:
    async def scenario() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        late: asyncio.Future[Result] = loop.create_future()
        loop.call_later(0.01, late.set_result, Result(PROBABILITIES))
        futures = [
            _answered(loop, Result(PROBABILITIES)),
            _answered(loop, InvalidImage("cannot identify an image")),
            late,
        ]
        uploads = [Upload(b"a", "a.png"), Upload(b"b", "b.png"), Upload(b"c", "c.png")]
        return await _predictor(futures).predict_batch(uploads)

    first, second, third = asyncio.run(scenario())
    assert (first["digit"], first["filename"]) == (3, "a.png")
    assert second == {
        "filename": "b.png",
        "error": {"code": "invalid_image", "message": "cannot identify an image"},
    }
    assert (third["digit"], third["filename"]) == (3, "c.png")


def test_a_failed_request_cancels_what_is_pending_and_reads_what_failed() -> None:
    async def scenario() -> tuple[list[str], bool]:
        loop = asyncio.get_running_loop()
        complaints: list[str] = []
        loop.set_exception_handler(lambda _, context: complaints.append(context["message"]))
        pending: asyncio.Future[Result] = loop.create_future()
        futures = [
            _answered(loop, Result(PROBABILITIES)),
            _answered(loop, RuntimeError("bad reply frame kind 9")),  # not the image's fault
            pending,
            _answered(loop, InvalidImage("cannot identify an image")),
        ]
        predictor = _predictor(futures)
        with pytest.raises(RuntimeError, match="bad reply frame kind"):
            await asyncio.wait_for(predictor.predict_batch([Upload(b"x")] * 4), timeout=5)
        cancelled = pending.cancelled()
        del futures, pending, predictor
        gc.collect()  # unread exceptions are reported when their future is collected
        await asyncio.sleep(0)
        return complaints, cancelled

    complaints, cancelled = asyncio.run(scenario())
    assert cancelled
    assert complaints == []
