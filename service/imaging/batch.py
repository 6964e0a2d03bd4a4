"""A batch of images made ready for the model, stage by stage (pipeline.py defines the stages).

Each stage runs for every image of the batch before the next one, and the statistics every
image asks for are measured in one call: the same few dozen numpy and OpenCV calls run back
to back and find their code in the CPU's caches (docs/performance.md). Each image's result is
bit for bit what ``preprocess_image`` gives it alone, and a bad image fails alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import ImageTooLarge, InternalError, ServiceError
from service.imaging.geometry import SIZE
from service.imaging.header import read_header
from service.imaging.measurement import Measurement, measure
from service.imaging.pipeline import Measure, Steps, StepsFactory, preprocess_steps

logger = logging.getLogger("service.imaging")

OnStage = Callable[[int, float], None]
"""Told before each stage which image of the batch runs it (its index) and how many seconds
that image has spent in its earlier stages: the worker's watchdog names and times it."""


@dataclass(slots=True)
class Prepared:
    """One image of a batch made ready for the model, or the error it earned."""

    pixels: np.ndarray | None = None  # (28, 28) float32, MNIST convention
    error: ServiceError | None = None
    seconds: float = 0.0  # its own decode + normalisation time


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
                prepared[index].error = _too_large(data, allowed_formats, max_pixels, left)
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


def _too_large(
    data: bytes, allowed_formats: Collection[str], max_pixels: int, left: int
) -> ServiceError:
    """Why an image refused within its request's budget was refused: over the limit on its
    own (its header says so, nothing is decoded), or only over what the images before it left."""
    try:
        read_header(data, allowed_formats, max_pixels)
    except ServiceError as alone:
        return alone
    return ImageTooLarge(
        f"the images of this request before this one left {left} of the pixels a request may "
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
