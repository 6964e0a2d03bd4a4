"""A worker's batch, in process: images run stage by stage, each failure stays with its image.

``run_batch`` is the worker's whole job for one batch (frames in, reply frames out);
``prepare_batch`` is the imaging package's part of it.
"""

from __future__ import annotations

import io
import time
import tracemalloc
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.contract import NUM_CLASSES
from service.errors import InvalidImage, ServiceError
from service.imaging import encode_png, prepare_batch, preprocess_image, preprocess_steps
from service.imaging import pipeline as imaging_pipeline
from service.imaging.pipeline import Steps, StepsFactory
from service.model import DigitClassifier
from service.workers import protocol as wire
from service.workers.process import Frame, Limits, run_batch
from tests.service.images import draw_digit, png

LIMITS = Limits(frozenset({"PNG", "JPEG"}), max_pixels=10_000_000, max_batch_size=32, max_delay_s=0)


class RecordingSlot:
    """The progress slot's worker side, remembering which request each mark named."""

    def __init__(self) -> None:
        self.marks: list[int] = []
        self.spent: dict[int, list[float]] = {}

    def decoding(self, request_id: int, spent: float = 0.0) -> None:
        self.marks.append(request_id)
        self.spent.setdefault(request_id, []).append(spent)

    def idle(self) -> None:
        self.marks.append(0)


@pytest.fixture(scope="module")
def model(tiny_onnx: Path) -> DigitClassifier:
    return DigitClassifier(tiny_onnx)


def _frames(payloads: list[bytes]) -> list[Frame]:
    return [Frame(i + 1, wire.ENCODED, 0, 1, 0.0, data) for i, data in enumerate(payloads)]


def _replies(data: bytes) -> dict[int, tuple[int, bytes]]:
    """request id -> (reply kind, payload)."""
    replies, offset = {}, 0
    while offset < len(data):
        head = wire.ReplyHead.unpack_from(data, offset)
        offset += wire.REPLY_SIZE
        replies[head.request_id] = (head.kind, data[offset : offset + head.length])
        offset += head.length
    return replies


def _logged(stages: int, log: list[str]) -> StepsFactory:
    """A stand-in preprocess: the image's bytes name it and how many stages it has; each stage
    is logged; an image named "bad" fails in its second stage."""

    def steps(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
        name = data.decode()
        for stage in range(1, stages + (name != "short")):
            log.append(f"{name}{stage}")
            if name == "bad" and stage == 2:
                raise InvalidImage("bad in its second stage")
            yield
        return np.full((28, 28), 0.5, np.float32)

    return steps


def test_each_stage_runs_for_every_image_before_the_next_stage(model: DigitClassifier) -> None:
    log: list[str] = []
    preprocess = _logged(3, log)
    slot = RecordingSlot()
    run_batch(_frames([b"a", b"short", b"b"]), slot, preprocess, model, LIMITS)
    # "short" has one stage fewer: it leaves the round robin, the others go on.
    assert log == ["a1", "short1", "b1", "a2", "short2", "b2", "a3", "b3"]
    # The slot names the image of every stage (a hang or a crash is blamed on it), then idle.
    assert slot.marks == [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 3, 0]


def test_the_slot_carries_each_images_own_time_for_the_timeout(model: DigitClassifier) -> None:
    """The watchdog bounds an image's own decode + normalisation time, as when images ran
    one by one: the other images' stages in between do not count."""
    stage_s = 0.05

    def slow(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
        for _ in range(3):
            time.sleep(stage_s)
            yield
        return np.zeros((28, 28), np.float32)

    slot = RecordingSlot()
    run_batch(_frames([b"a", b"b", b"c"]), slot, slow, model, LIMITS)
    for spent in slot.spent.values():
        first, second, third, last = spent
        assert first == 0.0 and second >= stage_s and third >= 2 * stage_s
        # Its own three stages; counting the whole batch's, it would be about nine.
        assert 3 * stage_s <= last < 6 * stage_s


def test_an_image_failing_in_a_later_stage_fails_alone(model: DigitClassifier) -> None:
    log: list[str] = []
    replies = _replies(
        run_batch(_frames([b"a", b"bad", b"b"]), RecordingSlot(), _logged(3, log), model, LIMITS)
    )
    assert "bad3" not in log and "b3" in log
    kind, payload = replies[2]
    assert kind == wire.ERROR
    assert wire.decode_error(payload).code == "invalid_image"
    for good in (1, 3):
        kind, payload = replies[good]
        assert kind == wire.RESULT
        probabilities = np.frombuffer(payload, np.float32)
        expected = model.predict(np.full((1, 1, 28, 28), 0.5, np.float32))[0]
        np.testing.assert_allclose(probabilities, expected, rtol=1e-5)


def test_a_preprocess_failing_before_its_first_stage_fails_its_image_only(
    model: DigitClassifier,
) -> None:
    stages = _logged(2, [])

    def eager(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
        if data == b"bug":
            raise RuntimeError("a bug before the first stage")
        return stages(data, allowed_formats=allowed_formats, max_pixels=max_pixels)

    replies = _replies(
        run_batch(_frames([b"a", b"bug", b"b"]), RecordingSlot(), eager, model, LIMITS)
    )
    assert [replies[i][0] for i in (1, 2, 3)] == [wire.RESULT, wire.ERROR, wire.RESULT]
    error = wire.decode_error(replies[2][1])
    assert (error.status_code, error.code) == (500, "internal_error")


def test_a_failing_measurement_fails_the_images_that_asked_and_nothing_else(
    model: DigitClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(works: object) -> list[object]:
        raise RuntimeError("a bug in the batch's statistics")

    monkeypatch.setattr(imaging_pipeline, "measure", broken)
    tensor = Frame(9, wire.TENSOR, 0, 2, 0.0, np.zeros((2, 1, 28, 28), np.float32).tobytes())
    frames = [*_frames([png(draw_digit()), png(draw_digit(ink=255, paper=0))]), tensor]
    replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, LIMITS))
    for request_id in (1, 2):
        kind, payload = replies[request_id]
        assert kind == wire.ERROR
        assert wire.decode_error(payload).code == "internal_error"
    kind, payload = replies[9]
    assert kind == wire.RESULT  # the V2 tensor in the same batch is answered
    assert np.frombuffer(payload, np.float32).shape == (2 * NUM_CLASSES,)


def test_staged_batches_give_the_one_by_one_answers(model: DigitClassifier) -> None:
    images = [
        png(draw_digit()),
        png(draw_digit(ink=255, paper=0)),
        png(draw_digit((300, 120), offset=(40, 0))),
        b"not an image",
        png(draw_digit(ink=255, paper=255)),  # blank
    ]
    replies = _replies(run_batch(_frames(images), RecordingSlot(), preprocess_steps, model, LIMITS))
    errors = []
    for request_id, data in enumerate(images, start=1):
        kind, payload = replies[request_id]
        try:
            alone = preprocess_image(
                data, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
            )
        except ServiceError as exc:
            assert (kind, wire.decode_error(payload).code) == (wire.ERROR, exc.code)
            errors.append(exc.code)
            continue
        assert kind == wire.RESULT
        expected = model.predict(alone.reshape(1, 1, 28, 28))[0]
        np.testing.assert_allclose(np.frombuffer(payload, np.float32), expected, rtol=1e-5)
    assert errors == ["invalid_image", "no_ink"]


def _full_batch(one_size: bool) -> list[bytes]:
    """32 images: 28 small ones of both polarities, a blank, a non-image and two more, all
    28x28 (``one_size``) or not."""
    images = [
        png(draw_digit((28, 28), ink=ink, paper=255 - ink, width=2 + i % 3, offset=(i % 4, 0)))
        for i, ink in enumerate([0, 255] * 14)
    ]
    others = [draw_digit((28, 28), offset=(5, 3)), draw_digit((28, 28), ink=200, paper=90)]
    if not one_size:
        others = [draw_digit((90, 60)), draw_digit((300, 120), offset=(40, 0))]
    images += [png(draw_digit((28, 28), ink=0, paper=0)), png(others[0]), b"nope", png(others[1])]
    return images


@pytest.mark.parametrize("one_size", [True, False])
def test_a_full_batch_measured_together_gives_the_one_by_one_images(one_size: bool) -> None:
    """32 images: the batch's statistics are measured together (service.imaging.statistics.
    measure; all of one size, or not), and each image is bit for bit the one it gets alone."""
    images = _full_batch(one_size)
    prepared = prepare_batch(
        images, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
    )
    failed = []
    for index, (data, result) in enumerate(zip(images, prepared, strict=True)):
        try:
            alone = preprocess_image(
                data, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
            )
        except ServiceError as exc:
            assert result.pixels is None and result.error is not None
            assert (result.error.code, result.error.message) == (exc.code, exc.message)
            failed.append(index)
            continue
        assert result.error is None and result.pixels is not None
        np.testing.assert_array_equal(result.pixels, alone)
    assert failed == [28, 30]  # the blank and the non-image


def test_a_worker_sends_back_the_png_of_what_the_model_saw(model: DigitClassifier) -> None:
    images = _full_batch(one_size=True)
    frames = [Frame(i, wire.ENCODED, wire.WITH_IMAGE, 1, 0.0, d) for i, d in enumerate(images)]
    replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, LIMITS))
    for request_id, data in enumerate(images):
        kind, payload = replies[request_id]
        if request_id in (28, 30):
            assert kind == wire.ERROR
            continue
        assert kind == wire.RESULT
        alone = preprocess_image(
            data, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
        )
        assert wire.result_png(payload, 1) == encode_png(alone)
        expected = model.predict(alone.reshape(1, 1, 28, 28))
        np.testing.assert_allclose(wire.result_probabilities(payload, 1), expected, 1e-5)


def _large_png(side: int) -> bytes:
    image = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(image)
    draw.line(
        [(side // 4, side // 5), (3 * side // 4, side // 5), (side // 2, 4 * side // 5)],
        fill=0,
        width=side // 20,
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_staged_batch_holds_one_full_size_image_at_a_time(model: DigitClassifier) -> None:
    """Between stages an image keeps only its small work copy: a batch of large images peaks
    at about one decoded image, not one per image."""
    data = _large_png(2000)  # 4 MB decoded

    def peak_bytes(count: int) -> int:
        frames = _frames([data] * count)
        tracemalloc.start()
        try:
            replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, LIMITS))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [kind for kind, _ in replies.values()] == [wire.RESULT] * count
        return peak

    one, six = peak_bytes(1), peak_bytes(6)
    assert one > 4_000_000  # the decoded image is seen
    assert six < one + 2_000_000  # six images: not 6 x 4 MB
