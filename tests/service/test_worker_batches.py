"""A worker's batch, in process: images run stage by stage, each failure stays with its image.

``run_batch`` is the worker's whole job for one batch (frames in, reply frames out);
``prepare_batch`` is the imaging package's part of it.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import time
import tracemalloc
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.contract import NUM_CLASSES
from service.errors import InvalidImage, ServiceError
from service.imaging import batch as imaging_batch
from service.imaging import encode_png, prepare_batch, preprocess_image, preprocess_steps
from service.imaging.pipeline import Steps, StepsFactory
from service.model import DigitClassifier
from service.workers import protocol as wire
from service.workers.process import Frame, Limits, run_batch, serve
from tests.conftest import build_onnx_model
from tests.service.images import draw_digit, png

LIMITS = Limits(
    frozenset({"PNG", "JPEG"}),
    max_pixels=10_000_000,
    max_batch_size=32,
    max_delay_s=0,
    max_batch_pixels=40_000_000,
)


class RecordingSlot:
    """The progress slot's worker side, remembering which request each mark named."""

    def __init__(self) -> None:
        self.marks: list[int] = []
        self.spent: dict[int, list[float]] = {}

    def marker(self, owners: list[tuple[int, int]]) -> Callable[[int, float], None]:
        def mark(index: int, spent: float) -> None:
            request_id = owners[index][0]
            self.marks.append(request_id)
            self.spent.setdefault(request_id, []).append(spent)

        return mark

    def idle(self) -> None:
        self.marks.append(0)


@pytest.fixture(scope="module")
def model(tiny_onnx: Path) -> DigitClassifier:
    return DigitClassifier(tiny_onnx)


def _frame(request_id: int, images: list[bytes], flags: int = 0) -> Frame:
    return Frame(request_id, wire.ENCODED, flags, len(images), 0.0, wire.pack_images(images))


def _frames(payloads: list[bytes], flags: int = 0) -> list[Frame]:
    """One frame of one image each, numbered from 1."""
    return [_frame(i + 1, [data], flags) for i, data in enumerate(payloads)]


def _replies(data: bytes) -> dict[int, tuple[int, bytes]]:
    """request id -> (reply kind, payload)."""
    replies, offset = {}, 0
    while offset < len(data):
        head = wire.ReplyHead.unpack_from(data, offset)
        offset += wire.REPLY_SIZE
        replies[head.request_id] = (head.kind, data[offset : offset + head.length])
        offset += head.length
    return replies


def _answers(data: bytes, with_pngs: bool = False) -> dict[int, wire.ImageResults]:
    """request id -> the image results of each one-image frame's reply."""
    answers = {}
    for request_id, (kind, payload) in _replies(data).items():
        assert kind == wire.IMAGES
        answers[request_id] = wire.decode_image_results(payload, 1, int(with_pngs))
    return answers


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
    answers = _answers(
        run_batch(_frames([b"a", b"bad", b"b"]), RecordingSlot(), _logged(3, log), model, LIMITS)
    )
    assert "bad3" not in log and "b3" in log
    assert answers[2].errors[0].code == "invalid_image"
    expected = model.predict(np.full((1, 1, 28, 28), 0.5, np.float32))
    for good in (1, 3):
        assert answers[good].errors == {}
        np.testing.assert_allclose(answers[good].probabilities, expected, rtol=1e-5)


def test_a_frame_of_several_images_gets_one_reply_with_each_images_answer(
    model: DigitClassifier,
) -> None:
    frames = [_frame(7, [b"a", b"bad", b"b"], wire.WITH_IMAGE), *_frames([b"c"])]
    slot = RecordingSlot()
    replies = _replies(run_batch(frames, slot, _logged(3, []), model, LIMITS))
    assert sorted(replies) == [1, 7]
    kind, payload = replies[7]
    assert kind == wire.IMAGES
    results = wire.decode_image_results(payload, 3, wire.WITH_IMAGE)
    assert list(results.errors) == [1] and results.errors[1].code == "invalid_image"
    expected = model.predict(np.full((1, 1, 28, 28), 0.5, np.float32))[0]
    for index in (0, 2):
        np.testing.assert_allclose(results.probabilities[index], expected, rtol=1e-5)
        assert results.pngs is not None
        assert results.pngs[index] == encode_png(np.full((28, 28), 0.5, np.float32))
    assert all(seconds > 0 for seconds in results.seconds)
    assert slot.marks[:4] == [7, 7, 7, 1]  # each image of the frame is named in turn


def _shape(name: bytes) -> np.ndarray:
    """ "bar" or a ring: shapes no shape signal refuses, so only the score rule judges them."""
    pixels = np.zeros((28, 28), np.float32)
    if name == b"bar":
        pixels[4:24, 12:16] = 1.0
    else:
        pixels[6:22, 6:22] = 1.0
        pixels[8:20, 8:20] = 0.0
    return pixels


def _named_shapes(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
    """A stand-in preprocess: the image's bytes name its ``_shape``; "bad" fails."""
    yield None
    if data == b"bad":
        raise InvalidImage("bad")
    return _shape(data)


def test_each_image_is_judged_on_its_own_row_of_the_model_call(tmp_path: Path) -> None:
    """A model call's rows are a tensor frame's, then the images that reached the model (not
    the failed ones): each image is refused or answered on its own row's score."""
    rule = json.dumps({"rule": "max_probability", "threshold": 0.5})
    path = build_onnx_model(tmp_path / "judged.onnx", metadata={"not_a_digit": rule})
    probe = DigitClassifier(path)
    tops = {
        name: float(probe.predict(_shape(name)[None, None]).max()) for name in (b"bar", b"ring")
    }
    low, high = sorted(tops, key=tops.__getitem__)
    assert tops[low] < tops[high]
    between = str((tops[low] + tops[high]) / 2)
    model = DigitClassifier(path, not_a_digit_threshold=between)
    tensor = np.full((2, 28 * 28), 0.5, np.float32).tobytes()
    frames = [
        Frame(1, wire.TENSOR, 0, 2, 0.0, tensor),
        _frame(2, [b"bad", low, high]),
    ]
    kind, payload = _replies(run_batch(frames, RecordingSlot(), _named_shapes, model, LIMITS))[2]
    results = wire.decode_image_results(payload, 3, 0)
    assert results.errors[0].code == "invalid_image"
    assert results.errors[1].code == "not_a_digit"  # the lower top probability
    assert 2 not in results.errors


def test_a_preprocess_failing_before_its_first_stage_fails_its_image_only(
    model: DigitClassifier,
) -> None:
    stages = _logged(2, [])

    def eager(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
        if data == b"bug":
            raise RuntimeError("a bug before the first stage")
        return stages(data, allowed_formats=allowed_formats, max_pixels=max_pixels)

    answers = _answers(
        run_batch(_frames([b"a", b"bug", b"b"]), RecordingSlot(), eager, model, LIMITS)
    )
    assert [list(answers[i].errors) for i in (1, 2, 3)] == [[], [0], []]
    error = answers[2].errors[0]
    assert (error.status_code, error.code) == (500, "internal_error")


def test_a_failing_measurement_fails_the_images_that_asked_and_nothing_else(
    model: DigitClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(works: object) -> list[object]:
        raise RuntimeError("a bug in the batch's statistics")

    monkeypatch.setattr(imaging_batch, "measure", broken)
    tensor = Frame(9, wire.TENSOR, 0, 2, 0.0, np.zeros((2, 1, 28, 28), np.float32).tobytes())
    frames = [*_frames([png(draw_digit()), png(draw_digit(ink=255, paper=0))]), tensor]
    replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, LIMITS))
    for request_id in (1, 2):
        kind, payload = replies[request_id]
        assert kind == wire.IMAGES
        assert wire.decode_image_results(payload, 1, False).errors[0].code == "internal_error"
    kind, payload = replies[9]
    assert kind == wire.PROBABILITIES  # the V2 tensor in the same batch is answered
    assert wire.tensor_probabilities(payload, 2)[0].shape == (2, NUM_CLASSES)


def test_staged_batches_give_the_one_by_one_answers(model: DigitClassifier) -> None:
    images = [
        png(draw_digit()),
        png(draw_digit(ink=255, paper=0)),
        png(draw_digit((300, 120), offset=(40, 0))),
        b"not an image",
        png(draw_digit(ink=255, paper=255)),  # blank
    ]
    answers = _answers(run_batch(_frames(images), RecordingSlot(), preprocess_steps, model, LIMITS))
    errors = []
    for request_id, data in enumerate(images, start=1):
        answer = answers[request_id]
        try:
            alone = preprocess_image(
                data, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
            )
        except ServiceError as exc:
            assert answer.errors[0].code == exc.code
            errors.append(exc.code)
            continue
        assert answer.errors == {}
        expected = model.predict(alone.reshape(1, 1, 28, 28))
        np.testing.assert_allclose(answer.probabilities, expected, rtol=1e-5)
    assert errors == ["invalid_image", "no_ink"]


def _full_batch(one_size: bool) -> list[bytes]:
    """32 images: 28 small ones of both polarities, a blank, a non-image and two more, all
    28x28 (``one_size``) or not (then one of them a sheet on a desk)."""
    images = [
        png(draw_digit((28, 28), ink=ink, paper=255 - ink, width=2 + i % 3, offset=(i % 4, 0)))
        for i, ink in enumerate([0, 255] * 14)
    ]
    others = [draw_digit((28, 28), offset=(5, 3)), draw_digit((28, 28), ink=200, paper=90)]
    if not one_size:  # a sheet on a desk among them: it is measured a second time, cut out
        sheet = Image.new("L", (120, 110), 60)
        sheet.paste(draw_digit((80, 80), width=6), (20, 15))
        others = [sheet, draw_digit((300, 120), offset=(40, 0))]
    images += [png(draw_digit((28, 28), ink=0, paper=0)), png(others[0]), b"nope", png(others[1])]
    return images


def test_an_image_read_in_colour_is_the_same_in_a_batch() -> None:
    """The colour view is a second run of the stages after the first found no ink; in a batch
    it runs between the other images' stages and gives what it gives alone."""
    ink = np.asarray(draw_digit(ink=255, paper=0), dtype=np.float32)[..., None] / 255
    red_on_green = (1 - ink) * np.array([40, 150, 40]) + ink * np.array([220, 30, 30])
    images = [png(Image.fromarray(red_on_green.astype(np.uint8))), png(draw_digit())] * 9
    prepared = prepare_batch(
        images, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
    )
    for data, result in zip(images, prepared, strict=True):
        alone = preprocess_image(
            data, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
        )
        assert result.error is None and result.pixels is not None
        np.testing.assert_array_equal(result.pixels, alone)


@pytest.mark.parametrize("one_size", [True, False])
def test_a_full_batch_measured_together_gives_the_one_by_one_images(one_size: bool) -> None:
    """32 images: the batch's statistics are measured together (service.imaging.measurement.
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
    (kind, payload), *_ = _replies(
        run_batch(
            [_frame(1, images, wire.WITH_IMAGE)], RecordingSlot(), preprocess_steps, model, LIMITS
        )
    ).values()
    assert kind == wire.IMAGES
    results = wire.decode_image_results(payload, len(images), wire.WITH_IMAGE)
    assert sorted(results.errors) == [28, 30]
    assert results.pngs is not None
    for index, data in enumerate(images):
        if index in results.errors:
            continue
        alone = preprocess_image(
            data, allowed_formats=LIMITS.allowed_formats, max_pixels=LIMITS.max_pixels
        )
        assert results.pngs[index] == encode_png(alone)
        expected = model.predict(alone.reshape(1, 1, 28, 28))[0]
        np.testing.assert_allclose(results.probabilities[index], expected, 1e-5)


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
            replies = run_batch(frames, RecordingSlot(), preprocess_steps, model, LIMITS)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [answer.errors for answer in _answers(replies).values()] == [{}] * count
        return peak

    one, six = peak_bytes(1), peak_bytes(6)
    assert one > 4_000_000  # the decoded image is seen
    assert six < one + 2_000_000  # six images: not 6 x 4 MB


def _large_png(side: int) -> bytes:
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).line([(side // 2, side // 5), (side // 2, 4 * side // 5)], 0, side // 20)
    return png(image)


def test_one_requests_images_share_a_pixel_budget_and_others_keep_theirs(
    model: DigitClassifier,
) -> None:
    big = _large_png(1000)  # 1,000,000 pixels each
    limits = Limits(
        frozenset({"PNG"}), max_pixels=10_000_000, max_batch_size=32, max_delay_s=0,
        max_batch_pixels=2_500_000,
    )  # fmt: skip
    frames = [_frame(7, [big, big, big, big]), _frame(8, [big, big])]
    replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, limits))
    hog = wire.decode_image_results(replies[7][1], 4, 0)
    assert sorted(hog.errors) == [2, 3]  # the third image would take it to 3,000,000
    assert {error.code for error in hog.errors.values()} == {"image_too_large"}
    assert "DIGITS_MAX_BATCH_PIXELS" in str(hog.errors[2])
    other = wire.decode_image_results(replies[8][1], 2, 0)
    assert not other.errors  # another request's images have a budget of their own
    np.testing.assert_allclose(other.probabilities[0], hog.probabilities[0], rtol=1e-6)


def test_without_a_budget_the_same_images_are_all_read(model: DigitClassifier) -> None:
    big = _large_png(1000)
    frames = [_frame(7, [big, big, big, big])]
    replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, LIMITS))
    assert not wire.decode_image_results(replies[7][1], 4, 0).errors


def test_an_image_too_large_on_its_own_is_told_so_whatever_came_before_it(
    model: DigitClassifier,
) -> None:
    """After a small image, one over the per-image limit was blamed on the images before it
    ("send the large images in smaller batches"), which would not have helped."""
    limits = Limits(
        frozenset({"PNG"}), max_pixels=2_000_000, max_batch_size=32, max_delay_s=0,
        max_batch_pixels=1_500_000,
    )  # fmt: skip
    frames = [_frame(7, [_large_png(100), _large_png(1500), _large_png(1000), _large_png(1000)])]
    replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, limits))
    result = wire.decode_image_results(replies[7][1], 4, 0)
    assert sorted(result.errors) == [1, 3]
    assert "1500x1500 = 2250000 pixels; the limit is 2000000" in str(result.errors[1])
    assert "DIGITS_MAX_BATCH_PIXELS" in str(result.errors[3])  # this one is over the budget


def test_an_image_past_the_budget_is_judged_from_its_header_alone(
    model: DigitClassifier,
) -> None:
    """Telling whether an image past the budget is also over the per-image limit decoded it
    in full: a request of many large images cost the worker every one of them anyway. A
    file cut after its header shows it: decoded, it would fail as truncated."""
    cut = _large_png(1200)[:200]  # header and the start of its pixels: 1,440,000 of them
    limits = Limits(
        frozenset({"PNG"}), max_pixels=2_000_000, max_batch_size=32, max_delay_s=0,
        max_batch_pixels=1_500_000,
    )  # fmt: skip
    frames = [_frame(7, [_large_png(1000), cut, cut])]
    replies = _replies(run_batch(frames, RecordingSlot(), preprocess_steps, model, limits))
    result = wire.decode_image_results(replies[7][1], 3, 0)
    assert sorted(result.errors) == [1, 2]
    for error in result.errors.values():
        assert error.code == "image_too_large"
        assert "DIGITS_MAX_BATCH_PIXELS" in str(error), error


def test_a_worker_whose_server_is_gone_stops_without_a_traceback(
    model: DigitClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A front end killed while its worker computes: the worker's reply meets a closed socket.
    It stops as at the socket's end, not with a BrokenPipeError traceback in the JSON log."""
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # serve() ignores SIGINT, SIGTERM
    worker_side, server_side = socket.socketpair()
    data = wire.pack_images([png(draw_digit())])
    head = wire.RequestHead(1, wire.ENCODED, 0, 1, time.monotonic(), len(data))
    server_side.sendall(head.pack() + data)
    server_side.close()
    with worker_side:
        serve(worker_side, RecordingSlot(), preprocess_steps, model, LIMITS)
