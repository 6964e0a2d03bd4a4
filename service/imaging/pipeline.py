"""Turn what people send into what LeNet-5 was trained on (docs/design.md section 1).

MNIST convention: white ink on black, 0..1, the ink fitted into a 20x20 box with its aspect
kept, placed in 28x28 so that its centre of mass sits at pixel (14, 14). Real images are black
ink on light, tinted, noisy paper, of any size and anywhere in the frame, so the steps are:
decode (a small image enlarged by blocks undone), the paper's statistics and the polarity,
uneven lighting removed, the stretch from paper to ink, specks and form lines dropped, fit
(a digit in dots as its grid), centre.

This runs once per image on the request path; its cost bounds the service's throughput. So
pixels stay 8-bit until the final crop, statistics come from 256-bin histograms, the stretch
is a 256-entry lookup table, and OpenCV and BLAS do the image work: a handful of calls.

A run of one image is a generator paused between its stages (``Steps``); a batch runs each
stage for every image before the next (``prepare_batch``), so the same few dozen numpy and
OpenCV calls on tiny arrays run back to back and find their code in the CPU's caches
(docs/performance.md). This module is the only home of that protocol.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import cv2
import numpy as np

from service.errors import ImageTooLarge, InternalError, NoInk, ServiceError
from service.imaging.colour import decode_colour_contrast
from service.imaging.cropped import is_clean_paper, ring_as_border
from service.imaging.decode import decode_gray
from service.imaging.enlarged import native_pixels
from service.imaging.geometry import (
    SIZE,
    already_mnist,
    centre_by_mass,
    fit_box,
    reduce_to_work_side,
)
from service.imaging.lighting import flatten_lighting
from service.imaging.page import find_page
from service.imaging.statistics import Measurement, ink_table, measure
from service.imaging.strokes import keep_strokes

logger = logging.getLogger("service.imaging")


@dataclass(frozen=True, slots=True)
class Measure:
    """What a run yields once its image is decoded: a request for the statistics of its work
    image, answered by sending back ``measure([work, ...])``'s entry for it."""

    work: np.ndarray
    decoded: int = 0  # pixels the image was decoded to: what its decoding cost


Steps = Generator[Measure | None, Measurement | None, np.ndarray]
"""A preprocessing run paused between its stages; its return value is the (28, 28) image.
A stage may end by yielding a ``Measure``: the next one must be sent its ``Measurement``."""


class StepsFactory(Protocol):
    """``preprocess_steps``'s signature; tests put slow or crashing stand-ins in its place."""

    def __call__(
        self, data: bytes, *, allowed_formats: Collection[str], max_pixels: int
    ) -> Steps: ...


OnStage = Callable[[int, float], None]
"""Told before each stage which image of the batch runs it (its index) and how many seconds
that image has spent in its earlier stages: the worker's watchdog names and times it."""


@dataclass(slots=True)
class Prepared:
    """One image of a batch made ready for the model, or the error it earned."""

    pixels: np.ndarray | None = None  # (28, 28) float32, MNIST convention
    error: ServiceError | None = None
    seconds: float = 0.0  # its own decode + normalisation time


def preprocess_image(
    data: bytes, *, allowed_formats: Collection[str], max_pixels: int
) -> np.ndarray:
    """Image bytes -> float32 (28, 28) in MNIST convention; typed ServiceErrors for bad input."""
    steps = preprocess_steps(data, allowed_formats=allowed_formats, max_pixels=max_pixels)
    answer: Measurement | None = None
    while True:
        try:
            request = steps.send(answer)
        except StopIteration as done:
            return cast(np.ndarray, done.value)
        answer = measure([request.work])[0] if request is not None else None


def preprocess_steps(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
    """``preprocess_image`` in stages. Between stages an image holds only its work copy (at
    most ``WORK_SIDE`` square), never the full decoded image. The first stage ends by yielding
    a ``Measure`` of the work image."""
    try:
        return (yield from _normalize_steps(decode_gray(data, allowed_formats, max_pixels)))
    except NoInk:  # perhaps ink as bright as its paper, in another colour (red on green)
        colours = decode_colour_contrast(data, allowed_formats, max_pixels)
        if colours is None:
            raise
        in_colour = _normalize_steps(colours)
        del colours  # the stages hold only their work copy
    return (yield from in_colour)


def _normalize_steps(gray: np.ndarray) -> Steps:
    pixels = native_pixels(_as_uint8(gray))  # a small image enlarged by blocks: its source
    work = reduce_to_work_side(pixels)
    original = gray if pixels.shape == (SIZE, SIZE) else None  # may already be MNIST
    decoded = gray.size
    del gray, pixels  # only the work copy (at most WORK_SIDE square) waits for the next stage
    measured = yield Measure(work, decoded)
    assert measured is not None, "a Measure is answered with its Measurement"
    if original is not None:
        passthrough = already_mnist(original, measured.background)
        if passthrough is not None:
            return passthrough
    sheet = find_page(work, measured)
    if sheet is not None:  # a sheet on a darker surround: its own paper is the paper
        work = sheet
        measured = yield from _measured(work)
    ink, lut = _bright_ink(work, measured)
    if lut is None:  # perhaps cropped to its ink: the border band was strokes, not paper
        ring = yield from _measured(ring_as_border(work))
        if is_clean_paper(ring):
            ink, lut = _bright_ink(work, ring)
    if lut is None:  # nothing stands out from the paper's noise, however busy the paper is
        raise NoInk(
            "no ink found: nothing stands out from the background (a blank image, too "
            "little contrast, or a busy picture such as a photograph)"
        )
    yield None
    kept, pieces = keep_strokes(ink, lut)
    yield None
    fitted = fit_box(kept, lut, pieces)
    yield None
    return centre_by_mass(fitted)


def _measured(work: np.ndarray) -> Generator[Measure, Measurement | None, Measurement]:
    measured = yield Measure(work)
    assert measured is not None, "a Measure is answered with its Measurement"
    return measured


def _bright_ink(work: np.ndarray, measured: Measurement) -> tuple[np.ndarray, np.ndarray | None]:
    """The work image with its ink bright, lighting flattened, and its stretch table."""
    ink = cv2.bitwise_not(work) if measured.inverted else work
    flattened = flatten_lighting(ink, measured.sigma)
    if flattened is not ink:
        return flattened, ink_table(flattened)
    return ink, measured.lut


def _as_uint8(gray: np.ndarray) -> np.ndarray:
    if gray.dtype == np.uint8:
        return np.ascontiguousarray(gray)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _nothing(index: int, spent: float) -> None:
    pass


@dataclass(slots=True)
class _Run:
    index: int
    steps: Steps
    prepared: Prepared
    asked: Measure | None = None  # what its last stage asked to have measured
    answer: Measurement | None = None  # for its next stage


def prepare_batch(
    payloads: Sequence[bytes],
    *,
    allowed_formats: Collection[str],
    max_pixels: int,
    steps: StepsFactory = preprocess_steps,
    on_stage: OnStage = _nothing,
    groups: Sequence[int] | None = None,
    max_group_pixels: int | None = None,
) -> list[Prepared]:
    """Every image of a batch made ready for the model, stage by stage; each image's result
    is bit for bit what ``preprocess_image`` gives it alone. A bad image fails alone, with
    its ServiceError; a bug fails it with InternalError (logged), never the batch.

    ``groups`` names each image's request: the images of one group decode at most
    ``max_group_pixels`` together (each still at most ``max_pixels``), so one request of
    many large images cannot hold the worker for long; the images past the budget get
    ImageTooLarge, and other groups' images are not affected."""
    prepared = [Prepared() for _ in payloads]
    spent: dict[int, int] = {}
    runs: list[_Run] = []
    for index, data in enumerate(payloads):  # each image's first stage (its decoding)
        group = groups[index] if groups is not None else 0
        left = max_pixels
        if max_group_pixels is not None:
            left = min(max_pixels, max_group_pixels - spent.get(group, 0))
        run = _start(index, data, prepared[index], steps, allowed_formats, max(left, 0))
        if run is None or not _stage(run, on_stage):
            if left < max_pixels and isinstance(prepared[index].error, ImageTooLarge):
                prepared[index].error = _over_budget(max_group_pixels or 0)
            continue
        if run.asked is not None:
            spent[group] = spent.get(group, 0) + run.asked.decoded
        runs.append(run)
    runs = _measure(runs, on_stage)
    while runs:
        runs = [run for run in runs if _stage(run, on_stage)]
        runs = _measure(runs, on_stage)
    return prepared


def _start(
    index: int,
    data: bytes,
    prepared: Prepared,
    steps: StepsFactory,
    allowed_formats: Collection[str],
    max_pixels: int,
) -> _Run | None:
    try:  # a generator runs nothing yet; a stand-in that is not one may raise here
        run = steps(data, allowed_formats=allowed_formats, max_pixels=max_pixels)
    except Exception:
        logger.exception("preparing image %d of a batch failed before its first stage", index)
        prepared.error = InternalError("internal error")
        return None
    return _Run(index, run, prepared)


def _over_budget(budget: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"the images of this request before this one used the {budget} pixels a request may "
        "decode in one worker (DIGITS_MAX_BATCH_PIXELS); send the large images in smaller "
        "batches"
    )


def _stage(run: _Run, on_stage: OnStage) -> bool:
    """Run the next stage of one image; False once it has its pixels or its error."""
    prepared = run.prepared
    on_stage(run.index, prepared.seconds)
    started = time.perf_counter()
    try:
        answer, run.answer = run.answer, None
        try:
            run.asked = run.steps.send(answer)
            return True
        except StopIteration as done:
            prepared.pixels = _checked(done.value)
    except ServiceError as exc:
        prepared.error = exc
    except Exception:
        logger.exception("preparing image %d of a batch failed", run.index)
        prepared.error = InternalError("internal error")
    finally:
        prepared.seconds += time.perf_counter() - started
    return False


def _checked(result: object) -> np.ndarray:
    pixels = np.asarray(result, dtype=np.float32)
    if pixels.shape != (SIZE, SIZE):
        raise ValueError(f"preprocessing returned shape {pixels.shape}, not (28, 28)")
    return pixels


def _measure(runs: list[_Run], on_stage: OnStage) -> list[_Run]:
    """Answer the runs whose last stage asked to be measured, all in one ``measure`` call,
    each charged an equal share of its time; returns ``runs`` less any it failed. The first
    of them is named for the stage: numpy over a batch of bounded arrays does not hang, and a
    bug here fails them all alike."""
    asking = [run for run in runs if run.asked is not None]
    if not asking:
        return runs
    on_stage(asking[0].index, asking[0].prepared.seconds)
    started = time.perf_counter()
    try:
        answers = measure([run.asked.work for run in asking])  # type: ignore[union-attr]
    except Exception:
        logger.exception("measuring a batch of %d images failed", len(asking))
        for run in asking:
            run.asked, run.prepared.error = None, InternalError("internal error")
        return [run for run in runs if run.prepared.error is None]
    share = (time.perf_counter() - started) / len(asking)
    for run, answer in zip(asking, answers, strict=True):
        run.asked, run.answer = None, answer
        run.prepared.seconds += share
    return runs
