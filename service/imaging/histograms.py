"""Median and percentiles of 8-bit pixels at a fraction of numpy's per-call cost.

``np.percentile`` and ``np.median`` spend more in Python-level set-up than in arithmetic on a
28x28 image, and preprocessing asks them several questions per image. ``PixelHistogram``
answers them from one 256-bin histogram, ``PixelHistograms`` for a batch of such histograms at
once (one row per image), and ``median`` with a single ``np.partition``: bit for bit numpy's
answers (the default "linear" method). docs/performance.md has the measurements.
"""

from __future__ import annotations

import functools
import math
from typing import cast

import numpy as np

_LEVELS = np.arange(256, dtype=np.float64)
_CENTRES = 512  # room for every median of 8-bit pixels: 511 whole and half levels


def median(values: np.ndarray) -> float:
    """``float(np.median(values))`` for a non-empty array without NaN."""
    flat = values.ravel()
    half = flat.size // 2
    if flat.size % 2:
        return float(np.partition(flat, half)[half])
    part = np.partition(flat, (half - 1, half))
    return float(np.mean(part[half - 1 : half + 1]))


def _spots(total: int, qs: tuple[float, ...]) -> tuple[list[int], list[float]]:
    """numpy's "linear" method: for each q (0..100), the two ranks (0-based, in a sorted
    multiset of ``total`` values) to interpolate between, and the weight of the upper one."""
    last = total - 1
    ranks: list[int] = []
    gammas: list[float] = []
    for q in qs:
        virtual = q / 100 * last
        low = math.floor(virtual)
        ranks += (low, low + 1 if low < last else last)
        gammas.append(virtual - low)
    return ranks, gammas


def _lerp(found: list[float], gammas: list[float]) -> list[float]:
    answers = []
    for index, gamma in enumerate(gammas):
        below, above = found[2 * index], found[2 * index + 1]
        diff = above - below
        # numpy's _lerp: interpolate from the nearer end for accuracy.
        answers.append(above - diff * (1 - gamma) if gamma >= 0.5 else below + diff * gamma)
    return answers


def weighted_percentiles(
    values: np.ndarray, counts: np.ndarray, qs: tuple[float, ...]
) -> list[float]:
    """``np.percentile`` (linear method) of the multiset where ``values[i]`` occurs
    ``counts[i]`` times; ``values`` ascending, at least one count positive."""
    # ndarray methods, not the np.* wrappers: their dispatch costs as much as the work.
    cumulative = counts.cumsum()
    ranks, gammas = _spots(int(cumulative[-1]), qs)
    return _lerp(values[cumulative.searchsorted(ranks, side="right")].tolist(), gammas)


@functools.lru_cache(maxsize=_CENTRES)
def _deviation_order(centre: float) -> tuple[np.ndarray, np.ndarray]:
    """The 256 levels' distances from ``centre``, ascending, and the order that sorts them.
    Cached: a median of 8-bit pixels is one of 511 values (whole or half levels)."""
    deviations = np.abs(_LEVELS - centre)
    order = deviations.argsort(kind="stable")
    sorted_deviations = deviations[order]
    sorted_deviations.flags.writeable = False
    order.flags.writeable = False
    return sorted_deviations, order


class PixelHistogram:
    """The 256-bin histogram of 8-bit pixels (bin index = pixel value) and its running
    total, so that all the statistics one image needs share a single cumulative sum.

    With 256 bins the answers cost a few microseconds whatever the image size: no partition
    of the pixels, no copy; bit for bit ``np.percentile`` of the pixels (linear method).
    """

    __slots__ = ("counts", "cumulative", "total")

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts
        self.cumulative = counts.cumsum()
        self.total = int(self.cumulative[-1])

    def reversed(self) -> PixelHistogram:
        """The histogram of ``255 - pixels``."""
        return PixelHistogram(self.counts[::-1])

    def percentiles(self, qs: tuple[float, ...], above: float = -1.0) -> list[float]:
        """Percentiles of the pixels brighter than ``above`` (all of them by default); the
        caller makes sure there is at least one."""
        before = self.total - self.count_above(above) if above >= 0 else 0
        ranks, gammas = _spots(self.total - before, qs)
        if before:
            ranks = [rank + before for rank in ranks]
        found = self.cumulative.searchsorted(ranks, side="right").tolist()
        return _lerp(found, gammas)

    def count_above(self, level: float) -> int:
        """How many pixels are brighter than ``level``."""
        first = min(max(math.floor(level) + 1, 0), len(self.counts))
        return self.total - (int(self.cumulative[first - 1]) if first > 0 else 0)

    def standing_out(self, centre: float, margin: float) -> tuple[int, int]:
        """How many pixels are darker than ``centre - margin``, and how many brighter than
        ``centre + margin``."""
        darker = self.total - self.count_above(math.ceil(centre - margin) - 1)
        return darker, self.count_above(centre + margin)

    def brightest(self) -> int:
        """The highest level present."""
        return int(self.cumulative.searchsorted(self.total, side="left"))

    def darkest(self) -> int:
        """The lowest level present."""
        return int(self.cumulative.searchsorted(1, side="left"))

    def median_deviation(self, centre: float) -> float:
        """``median(|pixels - centre|)``."""
        deviations, order = _deviation_order(centre)
        return weighted_percentiles(deviations, self.counts[order], (50.0,))[0]


_ROW_STRIDE = 1 << 40  # above any pixel count: rows offset by it stay apart when flattened
_DISTANCES = np.arange(256, dtype=np.int64)
_MEDIAN = np.array([50.0])


@functools.lru_cache(maxsize=64)
def _row_offsets(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, its offset in a flattened running count, and its first index there."""
    index = np.arange(rows, dtype=np.int64)
    return index * _ROW_STRIDE, index * 256


def row_counts(pixels: np.ndarray) -> np.ndarray:
    """The 256-bin counts (N, 256) of N rows of 8-bit pixels (N, P), in one ``bincount``:
    each row's pixels shifted into its own 256 bins."""
    rows = len(pixels)
    shifted = pixels + _row_offsets(rows)[1][:, None]
    return np.bincount(shifted.ravel(), minlength=rows * 256).reshape(rows, 256)


def _search_rows(flat: np.ndarray, targets: np.ndarray, side: str) -> np.ndarray:
    """``searchsorted`` of each row's targets (N, k) in its row of ``flat``: the rows' running
    counts, each offset by ``_ROW_STRIDE`` so that one search serves every row."""
    offsets, starts = _row_offsets(len(targets))
    found = flat.searchsorted(targets + offsets[:, None], side=side)  # type: ignore[call-overload]
    return cast(np.ndarray, found - starts[:, None])


def _lerp_rows(
    flat: np.ndarray,
    counted: np.ndarray,
    qs: np.ndarray,
    skipped: np.ndarray | None = None,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """numpy's "linear" method per row and q: (N, len(qs)) percentiles of the multisets whose
    running counts ``flat`` holds (see ``_search_rows``), each of ``counted`` values after its
    ``skipped`` smallest, the values being the column indices plus ``values`` (N, 1) if given.
    Step for step ``_spots`` and ``_lerp`` in float64, so bit for bit their answers."""
    last = counted[:, None] - 1
    virtual = qs / 100 * last
    low = np.floor(virtual).astype(np.int64)
    high = np.minimum(low + 1, last)
    ranks = np.concatenate([low, high], axis=1)
    if skipped is not None:
        ranks += skipped[:, None]
    found = _search_rows(flat, ranks, "right")
    if values is not None:
        found = found + values
    below, above = found[:, : len(qs)], found[:, len(qs) :]
    gamma = virtual - low
    diff = above - below
    return cast(
        np.ndarray, np.where(gamma >= 0.5, above - diff * (1 - gamma), below + diff * gamma)
    )


class PixelHistograms:
    """``PixelHistogram`` for several images at once: one row per image, each statistic in a
    few numpy calls for all the rows, with each row's answer bit for bit its own
    ``PixelHistogram``'s (tests/throughput/test_fast_paths.py).

    Why: for one 28x28 image the statistics are a dozen numpy calls on 256 numbers, so their
    cost is the calls; a worker measures a whole batch's images together
    (``service.imaging.measurement.measure``).
    """

    __slots__ = ("counts", "cumulative", "total", "_flat")

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts
        self.cumulative = counts.cumsum(axis=1)
        self.total = self.cumulative[:, -1]
        self._flat = (self.cumulative + _row_offsets(len(counts))[0][:, None]).ravel()

    def reversed_where(self, flip: np.ndarray) -> PixelHistograms:
        """The histograms of ``255 - pixels`` in the rows where ``flip`` is set."""
        if not flip.any():
            return self
        return PixelHistograms(np.where(flip[:, None], self.counts[:, ::-1], self.counts))

    def rows(self, which: np.ndarray) -> PixelHistograms:
        """The histograms of the rows ``which`` (indices)."""
        return PixelHistograms(self.counts[which])

    def percentiles(self, qs: tuple[float, ...], above: np.ndarray | None = None) -> np.ndarray:
        """(N, len(qs)): per row, percentiles (0..100) of the pixels brighter than that row's
        ``above`` (all of them where it is negative or not given); each row must have one."""
        if above is None:
            return _lerp_rows(self._flat, self.total, np.asarray(qs))
        skipped = np.where(above >= 0, self.total - self.count_above(above), 0)
        return _lerp_rows(self._flat, self.total - skipped, np.asarray(qs), skipped)

    def count_above(self, levels: np.ndarray) -> np.ndarray:
        """Per row, how many pixels are brighter than that row's level."""
        first = np.floor(levels).astype(np.int64)
        first += 1
        np.minimum(np.maximum(first, 0, out=first), 256, out=first)  # np.clip's wrapper costs more
        below = self.cumulative.ravel()[_row_offsets(len(first))[1] + np.maximum(first - 1, 0)]
        return cast(np.ndarray, self.total - np.where(first > 0, below, 0))

    def standing_out(self, centres: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Per row, ``PixelHistogram.standing_out`` around that row's centre."""
        darker = self.total - self.count_above(np.ceil(centres - margin) - 1)
        return darker, self.count_above(centres + margin)

    def brightest(self) -> np.ndarray:
        """Per row, the highest level present."""
        return _search_rows(self._flat, self.total[:, None], "left")[:, 0]

    def median_deviation(self, centres: np.ndarray) -> np.ndarray:
        """Per row, ``median(|pixels - centre|)`` for whole or half-level centres (a median
        of 8-bit pixels is one), without sorting: the distances come in groups of equal
        value, k or k + 1/2 for the levels just below and above the centre, so the count
        within each distance is two lookups in the running count."""
        whole = np.floor(centres).astype(np.int64)
        half = centres - whole  # 0.0 or 0.5
        offsets, starts = (part[:, None] for part in _row_offsets(len(centres)))
        upper = np.minimum((whole + (half > 0))[:, None] + _DISTANCES, 255)
        lower = whole[:, None] - 1 - _DISTANCES
        flat = self.cumulative.ravel()
        within = flat[starts + upper] - np.where(lower >= 0, flat[starts + np.maximum(lower, 0)], 0)
        median = _lerp_rows((within + offsets).ravel(), self.total, _MEDIAN, values=half[:, None])
        return median[:, 0]
