"""Predictor.predict_batch over a stand-in pool: per-entry errors (of an image, or of a whole
frame), and a failed request leaves no answer behind (nothing pending, no "exception was
never retrieved")."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidImage, NotReady
from service.metrics import Metrics
from service.predictor import Predictor, Upload
from service.workers.protocol import ImageResults
from service.workers.results import Chunk

Result = ImageResults


class StandInPool:
    """Hands out the futures it was given, one image each, as WorkerPool.classify_many would."""

    def __init__(self, futures: list[asyncio.Future[Result]]) -> None:
        self.futures = futures

    def classify_many(
        self, items: Iterable[bytes], flags: int = 0, trace: bytes | None = None
    ) -> list[Chunk]:
        assert len(list(items)) == len(self.futures)
        return [Chunk(1, future) for future in self.futures]


def _predictor(futures: list[asyncio.Future[Result]]) -> Predictor:
    return Predictor(StandInPool(futures), Metrics())  # type: ignore[arg-type]


def _answered(loop: asyncio.AbstractEventLoop, value: Result | Exception) -> asyncio.Future[Result]:
    future: asyncio.Future[Result] = loop.create_future()
    if isinstance(value, Exception):
        future.set_exception(value)
    else:
        future.set_result(value)
    return future


def _result(digit: int = 3, error: InvalidImage | None = None) -> Result:
    probabilities = np.eye(10, dtype=np.float32)[[digit]]
    errors = {} if error is None else {0: error}
    return Result(probabilities, np.zeros(1, np.float32), np.zeros(1, np.float32), errors, None)


def test_each_entry_gets_its_answer_or_its_error() -> None:
    async def scenario() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        late: asyncio.Future[Result] = loop.create_future()
        loop.call_later(0.01, late.set_result, _result(7))
        futures = [
            _answered(loop, _result()),
            _answered(loop, _result(error=InvalidImage("cannot identify an image"))),
            late,
            _answered(loop, NotReady("the service is shutting down")),  # the whole frame
        ]
        uploads = [Upload(bytes([i]), f"{i}.png") for i in range(4)]
        return await _predictor(futures).predict_batch(uploads)

    first, second, third, fourth = asyncio.run(scenario())
    assert (first["digit"], first["filename"]) == (3, "0.png")
    assert second == {
        "filename": "1.png",
        "error": {"code": "invalid_image", "message": "cannot identify an image"},
    }
    assert (third["digit"], third["filename"]) == (7, "2.png")
    assert fourth == {
        "filename": "3.png",
        "error": {"code": "not_ready", "message": "the service is shutting down"},
    }


def test_a_failed_request_cancels_what_is_pending_and_reads_what_failed() -> None:
    async def scenario() -> tuple[list[str], bool]:
        loop = asyncio.get_running_loop()
        complaints: list[str] = []
        loop.set_exception_handler(lambda _, context: complaints.append(context["message"]))
        pending: asyncio.Future[Result] = loop.create_future()
        futures = [
            _answered(loop, _result()),
            _answered(loop, RuntimeError("bad reply frame kind 9")),  # not the image's fault
            pending,
            _answered(loop, NotReady("the service is shutting down")),
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
