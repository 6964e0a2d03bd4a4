"""An image's pixels moved so that lines of a given slope lie level, and moved back: a
form photographed a few degrees turned, levelled so that its lines are found as rows
(lines.py). Whole pixels move, nothing is resampled, so the way back is exact.
"""

from __future__ import annotations

import numpy as np


class Levelled:
    """Moves the pixels of an image so that lines of ``slope`` lie level and the sides of a
    box turned as much stand upright: each column shifted down, then each row right, by
    whole pixels. Nothing is resampled, so ``undo`` gives the image back exactly; columns
    (rows) shifted alike are neighbours, so each such run moves as one slice."""

    def __init__(self, shape: tuple[int, ...], slope: float) -> None:
        self.height, self.width = shape
        self.down = _runs(-slope * np.arange(self.width))
        self.tall = self.height + max(shift for *_, shift in self.down)
        self.across = _runs(slope * np.arange(self.tall))
        self.shape = (self.tall, self.width + max(shift for *_, shift in self.across))

    def apply(self, image: np.ndarray) -> np.ndarray:
        upright = np.zeros((self.tall, self.width), image.dtype)
        for start, stop, shift in self.down:
            upright[shift : shift + self.height, start:stop] = image[:, start:stop]
        levelled = np.zeros(self.shape, image.dtype)
        for start, stop, shift in self.across:
            levelled[start:stop, shift : shift + self.width] = upright[start:stop]
        return levelled

    def undo(self, levelled: np.ndarray) -> np.ndarray:
        upright = np.empty((self.tall, self.width), levelled.dtype)
        for start, stop, shift in self.across:
            upright[start:stop] = levelled[start:stop, shift : shift + self.width]
        image = np.empty((self.height, self.width), levelled.dtype)
        for start, stop, shift in self.down:
            image[:, start:stop] = upright[shift : shift + self.height, start:stop]
        return image


def _runs(offsets: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, shift) of each run of neighbours whose rounded ``offsets`` are equal,
    shifted so that the least is 0."""
    shifts = np.rint(offsets).astype(np.intp)
    shifts -= shifts.min()
    breaks = (np.flatnonzero(np.diff(shifts)) + 1).tolist()
    starts, stops = [0, *breaks], [*breaks, len(shifts)]
    return [(start, stop, int(shifts[start])) for start, stop in zip(starts, stops, strict=True)]
