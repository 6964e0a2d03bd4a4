"""Predictor.predict_batch over a stand-in pool: per-entry errors (of an image, or of a whole
frame), and a failed request leaves no answer behind (nothing pending, no "exception was
never retrieved")."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidImage, NotReady, Overloaded
from service.metrics import Metrics
from service.predictor import Predictor, Upload
from service.workers import protocol as wire
from service.workers.protocol import ImageResults
from service.workers.results import Chunk

Result = ImageResults


class StandInPool:
    """Hands out the futures it was given, one image each, as WorkerPool.classify_many would."""

    options = SimpleNamespace(workers=2)

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


class TimedPool:
    """Answers a plain image at once and an explained one 10 ms later, and records how many
    explained images were in the workers at once."""

    options = SimpleNamespace(workers=4)  # two explained images at a time

    def __init__(self, room: int = 1000) -> None:
        self.explaining = self.most_explaining = 0
        self.sent: list[bytes] = []
        self.room = room  # images the queue takes

    def check_room(self, count: int) -> None:
        if count > self.room:
            raise Overloaded(f"inference queue full; {count} images do not fit")

    def classify(self, data: bytes, flags: int = 0, trace: bytes | None = None) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self.sent.append(data)
        if not flags & wire.EXPLAIN:
            future.set_result(_result())
            return future
        self.explaining += 1
        self.most_explaining = max(self.most_explaining, self.explaining)

        def answer() -> None:
            self.explaining -= 1
            future.set_result(_result(7))

        loop.call_later(0.01, answer)
        return future


def test_explained_images_take_turns_and_plain_requests_pass_them() -> None:
    """A 64-image ?explain=true batch went to every worker in frames of 32, and the plain
    requests behind it waited for all of it (p50 4 ms -> 0.5 s, with three such clients
    3 s): explained images now go one a frame, at most half the workers' worth at once."""
    pool = TimedPool()
    predictor = Predictor(pool, Metrics())  # type: ignore[arg-type]

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
        uploads = [Upload(bytes([i]), f"{i}.png") for i in range(8)]
        batch = asyncio.ensure_future(predictor.predict_batch(uploads, explain=True))
        await asyncio.sleep(0.005)  # the batch's first turns are taken
        plain = await predictor.predict(Upload(b"plain"))
        batch_done_first = batch.done()
        return await batch, plain, batch_done_first

    entries, plain, batch_done_first = asyncio.run(scenario())
    assert [entry["digit"] for entry in entries] == [7] * 8
    assert plain["digit"] == 3 and not batch_done_first  # not queued behind the batch
    assert pool.most_explaining == 2
    assert sorted(pool.sent) == sorted([bytes([i]) for i in range(8)] + [b"plain"])


def test_an_explained_batch_that_does_not_fit_the_queue_is_refused_whole() -> None:
    """Explained images are sent in turns, each admitted as it goes: with the queue full, a
    batch was answered 200 with an 'overloaded' error per image (a client's CLI took them for
    bad files) where a plain batch is a 503 with Retry-After (a review)."""
    pool = TimedPool(room=3)
    predictor = Predictor(pool, Metrics())  # type: ignore[arg-type]
    uploads = [Upload(bytes([i]), f"{i}.png") for i in range(4)]
    with pytest.raises(Overloaded):
        asyncio.run(predictor.predict_batch(uploads, explain=True))
    assert pool.sent == []
