"""The paper and the ink of an 8-bit image, from its histograms: which side is ink, the
paper's level and noise, and the stretch table that takes paper to 0 and ink to 1.

Every statistic comes from a 256-bin histogram of the image or of its border (the paper,
mostly), so it costs the same whatever the image's size; a batch's images are measured
together, their histograms' statistics in a few numpy calls for all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from service.imaging.histograms import PixelHistogram, PixelHistograms, row_counts

# A normal distribution's standard deviation from its median absolute deviation.
MAD_TO_SIGMA = 1.4826
MIN_CONTRAST = 24.0  # ink must differ from the background by this much (of 255) to exist
NOISE_SIGMAS = 3.0  # background noise floor, in robust standard deviations of the border
BORDER_SHARE = 0.04  # of the shorter side: how wide the border taken for paper is
# Histograms of images up to this many pixels by np.bincount, larger ones by cv2.calcHist,
# whose set-up costs more than counting a small image.
_BINCOUNT_PIXELS = 4096
# From this many images a batch is measured in PixelHistograms rows: the batched calls cost
# about the same whatever the count, so fewer images are measured one by one.
MEASURE_TOGETHER = 16
_LEVELS = np.arange(256, dtype=np.float32)
MIN_INK_PIXELS = 10  # of the work image: fewer dark pixels on light paper are a speck of dust
# The percentiles taken as an image's darkest and brightest levels: a few specks are no ink.
DARKEST, BRIGHTEST = 0.1, 99.9
_TABLES = 256  # stretch tables kept (1 KB each)


class Measurement(NamedTuple):
    """An image's paper and ink, from its histograms (``measure``)."""

    background: float  # the border's median level, as sent (the MNIST passthrough, sheet.py)
    inverted: bool  # dark ink on light paper: inverted so that the ink is the bright side
    sigma: float  # the paper's noise (robust sigma of the border)
    lut: np.ndarray | None  # the stretch table (paper to 0, ink to 1); None: no ink stands out


def measure(works: Sequence[np.ndarray]) -> list[Measurement]:
    """The paper and ink of 8-bit work images: polarity (the ink is whichever extreme lies
    farther from the paper's level), the paper's level and noise, the stretch table.

    From ``MEASURE_TOGETHER`` images up they are measured together (``PixelHistograms``),
    bit for bit each image's own statistics: the batched branch repeats ``_measure_one``'s
    steps (``_paper``, ``_ink_up``, ``_stretch``) over arrays, so a change to one is a change
    to both, and tests/throughput/test_fast_paths.py compares them.
    """
    if len(works) < MEASURE_TOGETHER:
        return [_measure_one(work) for work in works]
    border_counts, counts = _batch_counts(works)
    borders = PixelHistograms(border_counts)
    background = borders.percentiles((50.0,))[:, 0]
    sigma = _noise(borders, background)
    full = PixelHistograms(counts)
    extremes = full.percentiles((DARKEST, BRIGHTEST))
    inverted = background - extremes[:, 0] > extremes[:, 1] - background
    tied = np.flatnonzero(background - extremes[:, 0] == extremes[:, 1] - background)
    if len(tied):
        dark, bright = full.rows(tied).standing_out(background[tied], MIN_CONTRAST)
        inverted[tied] = (dark >= MIN_INK_PIXELS) & (dark > bright)
    level = np.where(inverted, 255.0 - background, background)  # mirrored, same spread
    luts, blank = _stretch_rows(full.reversed_where(inverted), level, sigma)
    return [
        Measurement(b, i, s, None if k else lut)
        for b, i, s, lut, k in zip(
            background.tolist(),
            inverted.tolist(),
            sigma.tolist(),
            luts,
            blank.tolist(),
            strict=True,
        )
    ]


def ink_table(ink: np.ndarray) -> np.ndarray | None:
    """The stretch table of an image already in ink-up polarity (after the lighting fit)."""
    return _stretch(pixel_histogram(ink), _paper(_border_histogram(ink)))


def clean_border_table(work: np.ndarray, measured: Measurement) -> np.ndarray | None:
    """The stretch table as if the border were its median level alone, without its spread:
    a sheet on a busy surround (a granite counter, a patterned cloth) stands out from the
    surround's level, not from its noise, which the border measures."""
    histogram, level = pixel_histogram(work), measured.background
    if measured.inverted:
        histogram, level = histogram.reversed(), 255.0 - level
    return _stretch(histogram, (level, 0.0))


def _noise(borders: PixelHistograms, background: np.ndarray) -> np.ndarray:
    """Per image, the paper's noise (robust sigma of its border: ``_paper``'s), measured only
    where the border is not one level all round (a canvas, a clean scan: no spread)."""
    above = borders.count_above(background - 1.0) - borders.count_above(background)
    spread = np.flatnonzero(above != borders.total)
    sigma = np.zeros(len(background))
    if len(spread):
        deviation = borders.rows(spread).median_deviation(background[spread])
        sigma[spread] = MAD_TO_SIGMA * deviation
    return sigma


def _batch_counts(works: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The 256-bin counts (N, 256) of the work images' borders and of their whole pixels.
    Small images of one size (a canvas's, a scanner's) are counted in one ``bincount`` per
    kind for the whole batch, each image's pixels shifted into its own 256 bins."""
    shape, rows = works[0].shape, len(works)
    if works[0].size > _BINCOUNT_PIXELS or any(work.shape != shape for work in works):
        return np.stack([_border_counts(w) for w in works]), np.stack([_counts(w) for w in works])
    pixels = np.concatenate(works).reshape(rows, -1)  # np.stack's wrapper costs more
    return row_counts(pixels[:, border_indices(*shape)]), row_counts(pixels)


def _measure_one(work: np.ndarray) -> Measurement:
    border_paper = _paper(_border_histogram(work))
    inverted, histogram, paper = _ink_up(work, border_paper)
    return Measurement(border_paper[0], inverted, paper[1], _stretch(histogram, paper))


def _border_slices(image: np.ndarray) -> tuple[np.ndarray, ...]:
    width = max(1, round(BORDER_SHARE * min(image.shape)))
    return (
        image[:width],
        image[-width:],
        image[width:-width, :width],
        image[width:-width, -width:],
    )


@functools.lru_cache(maxsize=64)
def border_indices(height: int, width: int) -> np.ndarray:
    """Flat indices of the border pixels (top, bottom, left, right; the corners in the top
    and bottom rows): one ``take`` per image. Cached: sizes repeat."""
    flat = np.arange(height * width, dtype=np.intp).reshape(height, width)
    indices = np.concatenate([part.ravel() for part in _border_slices(flat)])
    indices.flags.writeable = False
    return indices


def border_pixels(image: np.ndarray) -> np.ndarray:
    return image.take(border_indices(*image.shape))


def _border_counts(pixels: np.ndarray) -> np.ndarray:
    return np.bincount(border_pixels(pixels), minlength=256)


def _border_histogram(pixels: np.ndarray) -> PixelHistogram:
    return PixelHistogram(_border_counts(pixels))


def _counts(pixels: np.ndarray) -> np.ndarray:
    """The 256-bin histogram of 8-bit pixels."""
    if pixels.size <= _BINCOUNT_PIXELS:
        return np.bincount(pixels.ravel(), minlength=256)
    return cv2.calcHist([pixels], [0], None, [256], (0, 256)).ravel().astype(np.int64)


def pixel_histogram(pixels: np.ndarray) -> PixelHistogram:
    """The ``PixelHistogram`` of 8-bit pixels, counted the cheaper way for their number."""
    return PixelHistogram(_counts(pixels))


def _paper(border: PixelHistogram) -> tuple[float, float]:
    """The paper's level and its noise (robust sigma), from the border's histogram."""
    (background,) = border.percentiles((50.0,))
    if border.count_above(background - 1.0) - border.count_above(background) == border.total:
        return background, 0.0  # one level all round (a canvas, a clean scan): no spread
    return background, MAD_TO_SIGMA * border.median_deviation(background)


def _ink_up(
    pixels: np.ndarray, paper: tuple[float, float]
) -> tuple[bool, PixelHistogram, tuple[float, float]]:
    """Whether to invert the pixels so that the ink is the bright side: the ink is whichever
    extreme (DARKEST and BRIGHTEST percentiles) lies farther from the background. Where both sit on
    the paper (a small digit on a large page), the side with more pixels standing out from
    it, if they are more than a speck.

    Returns that, and the histogram and the paper (level, sigma) in ink-up polarity.
    """
    histogram = pixel_histogram(pixels)
    background, sigma = paper
    low, high = histogram.percentiles((DARKEST, BRIGHTEST))
    inverted = background - low > high - background
    if background - low == high - background:  # both on the paper: under 0.1 % is ink
        dark, bright = histogram.standing_out(background, MIN_CONTRAST)
        inverted = dark >= MIN_INK_PIXELS and dark > bright
    if inverted:
        # Inverting mirrors the border's median and keeps its spread.
        return True, histogram.reversed(), (255.0 - background, sigma)
    return False, histogram, paper


def _stretch(histogram: PixelHistogram, paper: tuple[float, float]) -> np.ndarray | None:
    """The 256-entry table taking background and its noise (``paper``: level, sigma) to 0 and
    ink to 1 (removes paper tint and JPEG noise): the pixel values are only ever used through it.
    None when the image is blank: no ink stands out from the paper's noise.
    """
    background, sigma = paper
    floor = background + NOISE_SIGMAS * sigma
    (peak,) = histogram.percentiles((BRIGHTEST,))
    brightest = float(histogram.brightest())
    if peak - floor < MIN_CONTRAST and brightest - floor < MIN_CONTRAST:
        return None
    cut = floor + 0.5 * (brightest - floor)
    level = brightest
    if histogram.count_above(cut) > 0:
        (level,) = histogram.percentiles((90.0,), above=cut)
    return _stretch_table(floor, max(level - floor, 1.0))


@functools.lru_cache(maxsize=_TABLES)
def _stretch_table(floor: float, span: float) -> np.ndarray:
    """``clip((levels - floor) / span, 0, 1)``, read-only: the pairs repeat (a canvas's paper
    is one level, its ink another), and building the table is a third of ``_stretch``."""
    lut = _LEVELS - floor
    lut /= span
    table = _clip_unit(lut)
    table.flags.writeable = False
    return table


def _stretch_rows(
    histograms: PixelHistograms, background: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``_stretch`` for each row (ink up) at once: the tables (N, 256), and which rows are
    blank (``_stretch`` returns None for them)."""
    floor = background + NOISE_SIGMAS * sigma
    peak = histograms.percentiles((BRIGHTEST,))[:, 0]
    brightest = histograms.brightest().astype(np.float64)
    blank = (peak - floor < MIN_CONTRAST) & (brightest - floor < MIN_CONTRAST)
    cut = floor + 0.5 * (brightest - floor)
    inked = histograms.count_above(cut) > 0
    top = histograms.percentiles((90.0,), above=np.where(inked, cut, -1.0))[:, 0]
    level = np.where(inked, top, brightest)
    luts = _LEVELS - floor.astype(np.float32)[:, None]
    luts /= np.maximum(level - floor, 1.0).astype(np.float32)[:, None]
    return _clip_unit(luts), blank


def _clip_unit(values: np.ndarray) -> np.ndarray:
    """``np.clip(values, 0, 1)`` in place, without the wrapper's dispatch."""
    np.minimum(values, 1.0, out=values)
    return np.maximum(values, 0.0, out=values)
