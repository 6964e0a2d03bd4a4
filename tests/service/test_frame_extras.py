"""What a frame carries when its flags ask (explanations, pixels, a trace context, timings),
and nothing more when they do not; and an image refused after the model ran keeps its map."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.errors import NoInk, ServiceError
from service.imaging import preprocess_steps
from service.metrics import Metrics
from service.model import DigitClassifier
from service.predictor import Predictor, Upload
from service.workers import protocol as wire
from service.workers.extras import TRACE_CONTEXT_SIZE, Explanations, split_trace
from service.workers.process import Frame, run_batch
from service.workers.results import Chunk
from tests.service.images import draw_digit, png
from tests.service.test_worker_batches import LIMITS, RecordingSlot

TRACE = bytes(range(16)) + bytes(range(100, 108)) + b"\x01"


def _results(count: int, flags: int, **extras: Any) -> bytes:
    probabilities = np.random.default_rng(0).random((count, 10)).astype(np.float32)
    errors: list[ServiceError | None] = [None] * count
    return wire.encode_image_results(
        probabilities, [0.001] * count, [0.0] * count, errors, None, **extras
    )


def test_without_flags_the_reply_is_what_it_was() -> None:
    plain = _results(2, 0)
    assert wire.decode_image_results(plain, 2, 0).explanations is None
    maps = np.ones((2, 28, 28), np.float32)
    explained = _results(2, 0, explanations=Explanations(maps, [b"png", b""]))
    assert len(explained) == len(plain) + 2 * 4 + maps.nbytes + 3


def test_every_extra_round_trips() -> None:
    maps = np.arange(2 * 784, dtype=np.float32).reshape(2, 28, 28)
    timing = (1.0, 2.0, 3.0, 4.0, 5.0, 32)
    payload = _results(
        2,
        0,
        explanations=Explanations(maps, [b"overlay-0", b""]),
        timing=timing,
        pixels=[bytes(784), None],
    )
    flags = wire.EXPLAIN | wire.WITH_PIXELS | wire.TRACED
    results = wire.decode_image_results(payload, 2, flags, sent_at=0.5)
    assert results.explanations is not None
    assert np.array_equal(results.explanations.maps, maps)
    assert results.explanations.overlays == [b"overlay-0", b""]
    assert results.pixels == [bytes(784), None]
    assert results.timing is not None
    assert (results.timing.sent_at, results.timing.model_end, results.timing.model_batch) == (
        0.5,
        3.0,
        32,
    )


def test_a_worker_answers_each_flag(tiny_onnx: Path) -> None:
    model = DigitClassifier(tiny_onnx)
    flags = wire.EXPLAIN | wire.WITH_PIXELS | wire.TRACED
    images = [png(draw_digit()), b"not an image"]
    frame = Frame(1, wire.ENCODED, flags, 2, time.monotonic(), wire.pack_images(images) + TRACE)
    assert frame.images() == images and frame.trace_context == TRACE
    assert split_trace(frame.payload, 0) is None and len(TRACE) == TRACE_CONTEXT_SIZE
    reply = run_batch([frame], RecordingSlot(), preprocess_steps, model, LIMITS)  # type: ignore[arg-type]
    head = wire.ReplyHead.unpack_from(reply)
    results = wire.decode_image_results(reply[wire.REPLY_SIZE :], 2, flags, frame.sent_at)
    assert head.kind == wire.IMAGES and list(results.errors) == [1]
    assert results.explanations is not None and results.explanations.overlays[0][:4] == b"\x89PNG"
    assert results.explanations.overlays[1] == b"" and not results.explanations.maps[1].any()
    assert results.pixels is not None and len(results.pixels[0] or b"") == 784
    assert results.pixels[1] is None
    timing = results.timing
    assert timing is not None and timing.model_batch == 1
    ordered = [timing.sent_at, timing.preprocess_start, timing.model_start, timing.model_end]
    assert ordered == sorted(ordered) and timing.model_end <= timing.explain_start


class OnePool:
    """Answers every frame with the same results (a stand-in for WorkerPool)."""

    options = SimpleNamespace(workers=2)

    def __init__(self, results: wire.ImageResults) -> None:
        self.results = results

    def check_room(self, count: int) -> None:
        """Room for any request."""

    def classify(self, data: bytes, flags: int = 0, trace: bytes | None = None) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(self.results)
        return future

    def classify_many(self, items: Any, flags: int = 0, trace: bytes | None = None) -> list[Chunk]:
        return [Chunk(len(items), self.classify(b"", flags, trace))]


def test_an_image_refused_after_the_model_keeps_its_map() -> None:
    """A refusal decided from the probabilities (issue 16's not_a_digit) keeps what the
    model saw and why, in the error answer (here a stand-in error in its place)."""
    maps = np.full((1, 28, 28), 0.25, np.float32)
    refused = NoInk("refused after the model ran")
    results = wire.ImageResults(
        np.eye(10, dtype=np.float32)[[4]],
        (0.001,),
        (0.0,),
        {0: refused},
        [b"\x89PNG seen"],
        Explanations(maps, [b"\x89PNG why"]),
    )
    predictor = Predictor(OnePool(results), Metrics())  # type: ignore[arg-type]
    with pytest.raises(NoInk) as raised:
        asyncio.run(predictor.predict(Upload(b"x"), include_image=True, explain=True))
    details = raised.value.details
    assert details["explanation"]["target"] == 4 and details["normalized_image"]
    assert np.array_equal(np.array(details["explanation"]["values"]), maps[0])
    (entry,) = asyncio.run(predictor.predict_batch([Upload(b"x", "a.png")], explain=True))
    assert entry["error"]["code"] == "no_ink" and entry["explanation"]["target"] == 4
    assert "normalized_image" not in entry  # not asked for
