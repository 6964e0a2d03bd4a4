"""An epoch's training batches, prepared on a second thread while the model trains.

A batch is the step's digits, a share of them replaced by printed digits (training/fonts.py),
non-digits added for outlier exposure (training/nondigits.py), all augmented together. That
preparation is a third of a step's CPU time. On two cores it runs on its own thread, up to
``AHEAD`` batches ahead of the model, with one intra-op thread each: small tensor ops gain
little from a second OpenMP thread, and on a machine shared with other work two spinning
OpenMP threads slowed a step several-fold, while two independent threads did not. The
batches and their random draws are the same either way: one thread draws from the
generator, in order.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from training.augment import AugmentConfig, augment
from training.config import MNIST_MEAN, MNIST_STD
from training.extra_data import OUTLIER
from training.fonts import FontDigits
from training.nondigits import NonDigitSource
from training.ones import flag_ones

T = TypeVar("T")
AHEAD = 2  # batches prepared ahead of the model


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in 0..1."""
    return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)


def standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - MNIST_MEAN) / MNIST_STD


def mix_printed(
    xb: torch.Tensor,
    yb: torch.Tensor,
    printed: FontDigits,
    fraction: float,
    generator: torch.Generator,
    ones_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the batch's first share with random glyphs (drawn from the seeded generator),
    a printed 1 ``ones_weight`` times as likely as another glyph.

    The batch is already a random draw, so its first rows are as good as any; the glyphs then
    go through the same augmentation as the handwriting.
    """
    count = round(fraction * len(yb))
    if count == 0:
        return xb, yb
    if ones_weight == 1.0:  # the draws of the recipes before the weight
        pick = torch.randint(len(printed.labels), (count,), generator=generator).numpy()
    else:
        weights = torch.from_numpy(np.where(printed.labels == 1, ones_weight, 1.0))
        pick = torch.multinomial(weights, count, replacement=True, generator=generator).numpy()
    xb, yb = xb.clone(), yb.clone()
    xb[:count] = to_tensor(printed.images[pick])
    yb[:count] = torch.from_numpy(printed.labels[pick])
    return xb, yb


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor  # standardised images: the digits first, then the non-digits
    y: torch.Tensor  # the digits' labels (the non-digits have none: uniform is their target)
    digits: int

    def to(self, device: str) -> Batch:
        return Batch(self.x.to(device), self.y.to(device), self.digits)


@dataclass
class BatchMaker:
    """Everything one step's batch is made from."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    batch_size: int
    generator: torch.Generator
    printed: FontDigits | None = None
    font_fraction: float = 0.0
    printed_ones_weight: float = 1.0
    outliers: NonDigitSource | None = None
    outlier_fraction: float = 0.0
    augment_config: AugmentConfig | None = None  # None: no augmentation
    flagged_ones: float = 0.0  # share of the batch's 1s given a flag (training/ones.py)

    def make(self, order: torch.Tensor, step: int) -> Batch:
        idx = order[step * self.batch_size : (step + 1) * self.batch_size]
        xb, yb = self.x_train[idx], self.y_train[idx]
        if self.flagged_ones > 0:
            xb = flag_ones(xb, yb, self.flagged_ones, self.generator)
        if self.printed is not None:
            xb, yb = mix_printed(
                xb, yb, self.printed, self.font_fraction, self.generator, self.printed_ones_weight
            )
        known = yb != OUTLIER  # "not a digit" corrections (--extra-data) join the non-digits
        corrections = xb[~known]
        xb, yb = xb[known], yb[known]
        digits = len(yb)
        if self.outliers is not None:
            count = round(self.outlier_fraction * digits)
            xb = torch.cat([xb, self.outliers.batch(count, xb, yb, self.generator)])
        xb = torch.cat([xb, corrections])
        if self.augment_config is not None:
            xb = augment(xb, self.augment_config, self.generator)
        return Batch(standardise(xb), yb, digits)


def feed(make: Callable[[int], T], steps: int, ahead: bool) -> Generator[T, None, None]:
    """``make(0)``, ..., ``make(steps - 1)``, made on a second thread when ``ahead``.

    The thread makes exactly ``steps`` items, so when the last is taken it is done and the
    generator it draws from is where a sequential run would have left it (the checkpoint
    saves that state). An exception in it is raised here, in the caller's thread. Closed
    early (Ctrl-C), it stops the thread and waits for it: a thread left inside a torch op
    when the interpreter exits aborted the process (SIGABRT) instead of exit status 130.
    """
    if not ahead:
        for step in range(steps):
            yield make(step)
        return
    ready: queue.Queue[T | BaseException] = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()

    def work() -> None:
        try:
            for step in range(steps):
                if stop.is_set():
                    return
                ready.put(make(step))
        except BaseException as error:  # handed to the caller, who raises it
            ready.put(error)

    worker = threading.Thread(target=work, name="batches", daemon=True)
    worker.start()
    try:
        for _ in range(steps):
            item = ready.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # its put may wait on a full queue: make room
            with contextlib.suppress(queue.Empty):
                ready.get_nowait()
            worker.join(timeout=0.05)
