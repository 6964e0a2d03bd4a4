"""Turn what people send into what LeNet-5 was trained on (docs/design.md section 1).

MNIST convention: white ink on black, 0..1, the ink fitted into a 20x20 box with its aspect
kept, placed in 28x28 so that its centre of mass sits at pixel (14, 14). Real images are black
ink on light, tinted, noisy paper, of any size and anywhere in the frame, so the steps are:
polarity from the border, uneven lighting (shadows) removed, background and noise floor
removal, specks dropped by connected components, crop, fit, centre.

How, and why this way: this runs once per image on the request path (in the worker processes
of service/workers.py), and its cost bounds the service's throughput. So the pixels stay
8-bit until the final crop, every statistic (border median and spread, percentiles) comes
from one 256-bin histogram, the stretch is a 256-entry lookup table (so every "ink >= level"
mask is an 8-bit threshold), and the image work is done by OpenCV and by BLAS products (the
Lanczos resize): a handful of calls per image instead of dozens of numpy calls on tiny arrays.
The lighting fit runs only for images whose border is not evenly lit.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

import cv2
import numpy as np
from PIL import Image

from service.decoding import DRAFT_SIZE, decode_gray
from service.errors import NoInk
from service.quantiles import PixelHistogram, PixelHistograms, median, row_counts
from service.resampling import resize_lanczos

SIZE = 28  # model input side
BOX = 20  # MNIST fits the ink into a 20x20 box...
CENTRE = 14.0  # ...and puts its centre of mass here (measured on MNIST test: 13.99, 14.01)
WORK_SIDE = DRAFT_SIZE  # larger images are reduced first: plenty for a 20-pixel target
MIN_CONTRAST = 24.0  # ink must differ from the background by this much (of 255) to exist
NOISE_SIGMAS = 3.0  # background noise floor, in robust standard deviations of the border
STRONG = 0.5  # "certainly ink": half the ink level above the floor
WEAK = 0.04  # faint anti-aliased edges are kept when they touch certain ink
SPECK_FRACTION = 0.08  # ink components smaller than this share of the largest are specks
RULE_ASPECT = 4.0  # a separate line this many times wider than high, below the digit,...
RULE_THICKNESS = 0.25  # ...at most this share of the digit's height,...
RULE_FILL = 0.5  # ...and straight (filling this share of its bounding box) is a form's rule
OUTLINE_BAND = 0.12  # of a frame's shorter side: how close to its box edges its ink lies...
OUTLINE_SHARE = 0.85  # ...for this share of its pixels
OUTLINE_FILL = 0.3  # a frame covers at most this share of its bounding box
EDGE_OBJECT_THICKNESS = 2.5  # edge-touching ink this many times thicker than the strokes: not ink
BOX_LEVEL = 0.3  # pixels at least this inked define the 20x20 box
MARGIN = 3  # output pixels of faint halo kept around the box
LIGHTING_SIDE = 64  # uneven lighting is estimated on a copy this small: it varies slowly
UNEVEN_SPREAD = 6.0  # border spread (robust sigma, of 255) above which lighting is looked at
UNEVEN_LEVELS = MIN_CONTRAST  # paper varying by more than this (of 255) gets its lighting removed
LIGHTING_FITS = 3  # fits of the lighting surface, each without the previous one's ink outliers
LIGHTING_OUTLIER_SIGMAS = 2.5  # border pixels this far above the fitted paper are ink
LIGHTING_MAX_RESIDUAL = 12.0  # paper fits its surface this well (robust sigma, of 255), or no fix
PASSTHROUGH_BACKGROUND = 64.0  # a 28x28 image on a darker border may already be MNIST
_MAX_LOOKUPS = 8  # kept components looked up one by one; more go through a label table
# Histograms of images up to this many pixels by np.bincount, larger ones by cv2.calcHist:
# calcHist's set-up costs more than the counting below it (28x28: 5.5 us against 3 us).
_BINCOUNT_PIXELS = 4096
_LEVELS = np.arange(256, dtype=np.float32)
_MEASURE_TOGETHER = 16  # from this many images, a batch is measured in PixelHistograms rows
_SOLE_COMPONENT = np.ones(1, dtype=np.intp)


@dataclass(frozen=True, slots=True)
class Measure:
    """What a run yields once its image is decoded: a request for the statistics of its work
    image, answered by sending back ``measure([work, ...])``'s entry for it."""

    work: np.ndarray


class Measurement(NamedTuple):
    """An image's paper and ink, from its histograms (``measure``)."""

    background: float  # the border's median level, as sent (for the MNIST passthrough)
    inverted: bool  # dark ink on light paper: inverted so that the ink is the bright side
    sigma: float  # the paper's noise (robust sigma of the border)
    lut: np.ndarray | None  # the stretch table (paper to 0, ink to 1); None: no ink stands out


Steps = Generator[Measure | None, Measurement | None, np.ndarray]
"""A preprocessing run paused between its stages; its return value is the (28, 28) image.
A stage may end by yielding a ``Measure``: the next one must be sent its ``Measurement``."""


def preprocess_image(
    data: bytes, *, allowed_formats: Collection[str], max_pixels: int
) -> np.ndarray:
    """Image bytes -> float32 (28, 28) in MNIST convention; typed ServiceErrors for bad input."""
    return finish(preprocess_steps(data, allowed_formats=allowed_formats, max_pixels=max_pixels))


def preprocess_steps(data: bytes, *, allowed_formats: Collection[str], max_pixels: int) -> Steps:
    """``preprocess_image`` in stages, for running a batch stage by stage: the worker runs
    the first stage of every image, then the second of every image, and so on.

    Why: each stage is a few dozen numpy and OpenCV calls on tiny arrays, so an image's cost
    is mostly the interpreter's and the libraries' code paths, and the same stage run back
    to back for a batch finds them in the CPU's caches and branch predictors. Measured in
    the service, /predict/batch of 64 28x28 PNGs (3 alternating restarts): 22 % less worker
    CPU per request, 159-162 requests/s instead of 117-133. Smaller stages help a little
    more (decoding apart from the statistics, the resize apart from the centring: 69 us
    instead of 73 us an image in process, fastest of 30 interleaved rounds). The results are
    the same bit for bit. Between stages an image holds only its work copy (at most
    ``WORK_SIDE`` square), never the full decoded image.

    The first stage ends by yielding a ``Measure`` of the work image: the driver (the
    worker, or ``finish`` for one image) measures every image that asked in one ``measure``
    call and sends each its ``Measurement``.
    """
    return (yield from _normalize_steps(decode_gray(data, allowed_formats, max_pixels)))


def finish(steps: Steps) -> np.ndarray:
    """Run the remaining stages of one image and return its result."""
    answer: Measurement | None = None
    while True:
        try:
            request = steps.send(answer)
        except StopIteration as done:
            return cast(np.ndarray, done.value)
        answer = measure([request.work])[0] if request is not None else None


def encode_png(image: np.ndarray) -> bytes:
    """A (28, 28) 0..1 array as an 8-bit grayscale PNG (what the model saw, for humans)."""
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def normalize_digit(gray: np.ndarray) -> np.ndarray:
    """Grayscale (H, W) 0..255 (uint8 or float), any polarity -> float32 (28, 28) MNIST."""
    return finish(_normalize_steps(gray))


def _normalize_steps(gray: np.ndarray) -> Steps:
    pixels = _as_uint8(gray)
    work = _reduce(pixels)
    original = gray if pixels.shape == (SIZE, SIZE) else None  # may already be MNIST
    del gray, pixels  # only the work copy (at most WORK_SIDE square) waits for the next stage
    measured = yield Measure(work)
    assert measured is not None, "a Measure is answered with its Measurement"
    if original is not None:
        passthrough = _already_mnist(original, measured.background)
        if passthrough is not None:
            return passthrough
    ink = cv2.bitwise_not(work) if measured.inverted else work
    lut = measured.lut
    flattened = _flatten_lighting(ink, measured.sigma)
    if flattened is not ink:
        ink = flattened
        lut = _stretch(_histogram(flattened), _paper(_border_histogram(flattened)))
    if lut is None:
        raise NoInk("no ink found: the image is blank or has too little contrast")
    yield None
    kept = _keep_strokes(ink, lut)
    yield None
    fitted = _fit(kept, lut)
    yield None
    return _centre(fitted)


def measure(works: Sequence[np.ndarray]) -> list[Measurement]:
    """The paper and ink of 8-bit work images: polarity (the ink is whichever extreme lies
    farther from the paper's level), the paper's level and noise, the stretch table.

    A batch's images are measured together, their histograms' statistics in a few numpy
    calls for all of them (``PixelHistograms``, bit for bit each image's own statistics).
    For a worker's batch of 32 28x28 images: 13 us an image instead of 34 one by one
    (fastest of 60 interleaved rounds; medians 21 and 45); the whole staged preprocessing of
    such a batch, 59-60 us an image instead of 71-76 (fastest of 12 interleaved rounds, two
    runs). The batched calls cost about 330 us whatever the count, so fewer than
    ``_MEASURE_TOGETHER`` images (the break-even, for canvases and for mixed sizes alike) are
    measured one by one.
    """
    if len(works) < _MEASURE_TOGETHER:
        return [_measure_one(work) for work in works]
    border_counts, counts = _batch_counts(works)
    borders = PixelHistograms(border_counts)
    background = borders.percentiles((50.0,))[:, 0]
    sigma = _noise(borders, background)
    full = PixelHistograms(counts)
    extremes = full.percentiles((0.1, 99.9))
    inverted = background - extremes[:, 0] > extremes[:, 1] - background
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


def _noise(borders: PixelHistograms, background: np.ndarray) -> np.ndarray:
    """Per image, the paper's noise (robust sigma of its border: ``_paper``'s), measured only
    where the border is not one level all round (a canvas, a clean scan: no spread)."""
    above = borders.count_above(background - 1.0) - borders.count_above(background)
    spread = np.flatnonzero(above != borders.total)
    sigma = np.zeros(len(background))
    if len(spread):
        deviation = borders.rows(spread).median_deviation(background[spread])
        sigma[spread] = 1.4826 * deviation
    return sigma


def _batch_counts(works: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The 256-bin counts (N, 256) of the work images' borders and of their whole pixels.
    Small images of one size (a canvas's, a scanner's) are counted in one ``bincount`` per
    kind for the whole batch, each image's pixels shifted into its own 256 bins."""
    shape, rows = works[0].shape, len(works)
    if works[0].size > _BINCOUNT_PIXELS or any(work.shape != shape for work in works):
        return np.stack([_border_counts(w) for w in works]), np.stack([_counts(w) for w in works])
    pixels = np.concatenate(works).reshape(rows, -1)  # np.stack's wrapper costs 40 us more
    return row_counts(pixels[:, _border_indices(*shape)]), row_counts(pixels)


def _measure_one(work: np.ndarray) -> Measurement:
    border_paper = _paper(_border_histogram(work))
    inverted, histogram, paper = _ink_up(work, border_paper)
    return Measurement(border_paper[0], inverted, paper[1], _stretch(histogram, paper))


def _as_uint8(gray: np.ndarray) -> np.ndarray:
    if gray.dtype == np.uint8:
        return np.ascontiguousarray(gray)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _border_slices(image: np.ndarray) -> tuple[np.ndarray, ...]:
    width = max(1, round(0.04 * min(image.shape)))
    return (
        image[:width],
        image[-width:],
        image[width:-width, :width],
        image[width:-width, -width:],
    )


@functools.lru_cache(maxsize=64)
def _border_indices(height: int, width: int) -> np.ndarray:
    """Flat indices of the border pixels, in ``_border_slices`` order: one ``take`` per image
    instead of four slices, four ravels and a concatenation. Cached: sizes repeat."""
    flat = np.arange(height * width, dtype=np.intp).reshape(height, width)
    indices = np.concatenate([part.ravel() for part in _border_slices(flat)])
    indices.flags.writeable = False
    return indices


def _border_pixels(image: np.ndarray) -> np.ndarray:
    return image.take(_border_indices(*image.shape))


def _border_counts(pixels: np.ndarray) -> np.ndarray:
    return np.bincount(_border_pixels(pixels), minlength=256)


def _border_histogram(pixels: np.ndarray) -> PixelHistogram:
    return PixelHistogram(_border_counts(pixels))


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    moments = cv2.moments(image)
    return moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]


def _already_mnist(gray: np.ndarray, background: float) -> np.ndarray | None:
    """A 28x28 image on a dark background that is centred like MNIST passes untouched, so the
    service answers exactly what offline evaluation of the same pixels answers.
    ``background``: the median of its border, in 8-bit levels."""
    if gray.dtype != np.uint8:
        background = median(_border_pixels(gray))
    if background > PASSTHROUGH_BACKGROUND:
        return None
    image = gray.astype(np.float32) / np.float32(255.0)
    if float(image.max()) < MIN_CONTRAST / 255.0:
        return None
    rows, cols = np.nonzero(image > 0.0)
    if np.ptp(rows) + 1 > BOX + 2 or np.ptp(cols) + 1 > BOX + 2:
        return None
    cy, cx = _centre_of_mass(image)
    if abs(cy - CENTRE) > 1.5 or abs(cx - CENTRE) > 1.5:
        return None
    return image


def _reduce(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape
    scale = WORK_SIDE / max(height, width)
    if scale >= 1.0:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Area averaging: antialiased, 2x faster than Pillow's 8-bit Lanczos, without the GIL;
    # the 20-pixel fit later is Lanczos, so the work image only has to keep the strokes.
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def _counts(pixels: np.ndarray) -> np.ndarray:
    """The 256-bin histogram of 8-bit pixels."""
    if pixels.size <= _BINCOUNT_PIXELS:
        return np.bincount(pixels.ravel(), minlength=256)
    return cv2.calcHist([pixels], [0], None, [256], (0, 256)).ravel().astype(np.int64)


def _histogram(pixels: np.ndarray) -> PixelHistogram:
    return PixelHistogram(_counts(pixels))


def _paper(border: PixelHistogram) -> tuple[float, float]:
    """The paper's level and its noise (robust sigma), from the border's histogram."""
    (background,) = border.percentiles((50.0,))
    if border.count_above(background - 1.0) - border.count_above(background) == border.total:
        return background, 0.0  # one level all round (a canvas, a clean scan): no spread
    return background, 1.4826 * border.median_deviation(background)


def _ink_up(
    pixels: np.ndarray, paper: tuple[float, float]
) -> tuple[bool, PixelHistogram, tuple[float, float]]:
    """Whether to invert the pixels so that the ink is the bright side: the ink is whichever
    extreme lies farther from the background.

    Returns that, and the histogram and the paper (level, sigma) in ink-up polarity.
    """
    histogram = _histogram(pixels)
    background, sigma = paper
    low, high = histogram.percentiles((0.1, 99.9))
    if background - low > high - background:
        # Inverting mirrors the border's median and keeps its spread.
        return True, histogram.reversed(), (255.0 - background, sigma)
    return False, histogram, paper


def _flatten_lighting(ink: np.ndarray, border_sigma: float) -> np.ndarray:
    """Subtract the paper's own brightness where it varies (a shadow across a phone photo,
    vignetting), so that one noise floor fits the whole image; otherwise return ``ink`` as is.

    The lighting is a quadratic surface fitted to the border pixels, which are mostly paper;
    ink there (brighter than the paper, in this polarity) is dropped by refitting without the
    bright outliers. Only the border is used, so a digit's thick strokes are never taken for
    lighting; a border that no smooth surface fits (a digit filling the frame, its strokes
    running along the edges) is left alone. An evenly lit border (small spread), the common
    case, costs nothing more.
    """
    if border_sigma < UNEVEN_SPREAD:
        return ink
    height, width = ink.shape
    scale = min(1.0, LIGHTING_SIDE / max(height, width))
    small = ink
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
    terms, edge = _lighting_grid(*small.shape)
    design, values = terms[edge], small.ravel()[edge].astype(np.float64)
    keep = np.ones(len(values), dtype=bool)
    for _ in range(LIGHTING_FITS):
        coefficients = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coefficients
        sigma = 1.4826 * median(np.abs(residual[keep])) + 1.0
        keep = residual < LIGHTING_OUTLIER_SIGMAS * sigma
        if keep.sum() < design.shape[1]:
            return ink
    surface = (terms @ coefficients).reshape(small.shape)
    if float(np.ptp(surface)) < UNEVEN_LEVELS or sigma > LIGHTING_MAX_RESIDUAL:
        return ink  # even after all, or the border is not smooth paper (ink runs along it)
    # 8-bit shading to subtract (saturating): lighting is smooth, half a level of rounding is
    # far below the noise floor.
    shading = np.clip(np.rint(surface - surface.min()), 0, 255).astype(np.uint8)
    if shading.shape != ink.shape:
        shading = cv2.resize(shading, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.subtract(ink, shading)


@functools.lru_cache(maxsize=64)
def _lighting_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H*W, 6) terms 1, x, y, x*x, x*y, y*y on -1..1 coordinates, row-major, and the flat
    indices of the border pixels (the border the statistics use). Cached: sizes repeat."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    xs, ys = xs.ravel(), ys.ravel()
    terms = np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=1)
    terms.flags.writeable = False
    # Each border pixel once, ascending (the statistics' order repeats the corners).
    return terms, np.unique(_border_indices(height, width))


def _stretch(histogram: PixelHistogram, paper: tuple[float, float]) -> np.ndarray | None:
    """The 256-entry table taking background and its noise (``paper``: level, sigma) to 0 and
    ink to 1 (removes paper tint and JPEG noise): the pixel values are only ever used through it.
    None when the image is blank: no ink stands out from the paper's noise.
    """
    background, sigma = paper
    floor = background + NOISE_SIGMAS * sigma
    (peak,) = histogram.percentiles((99.9,))
    brightest = float(histogram.brightest())
    if peak - floor < MIN_CONTRAST and brightest - floor < MIN_CONTRAST:
        return None
    cut = floor + 0.5 * (brightest - floor)
    level = brightest
    if histogram.count_above(cut) > 0:
        (level,) = histogram.percentiles((90.0,), above=cut)
    lut = _LEVELS - floor
    lut /= max(level - floor, 1.0)
    return _clip_unit(lut)


def _stretch_rows(
    histograms: PixelHistograms, background: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``_stretch`` for each row (ink up) at once: the tables (N, 256), and which rows are
    blank (``_stretch`` returns None for them)."""
    floor = background + NOISE_SIGMAS * sigma
    peak = histograms.percentiles((99.9,))[:, 0]
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
    """``np.clip(values, 0, 1)`` in place, without the wrapper's 3 us of dispatch."""
    np.minimum(values, 1.0, out=values)
    return np.maximum(values, 0.0, out=values)


def _at_least(pixels: np.ndarray, lowest: int) -> np.ndarray:
    """255 where ``pixels >= lowest``, else 0 (OpenCV compares ``>``, without the GIL)."""
    return cv2.threshold(pixels, lowest - 1, 255, cv2.THRESH_BINARY)[1]


def _keep_strokes(ink: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Drop specks and stray shading: keep faint pixels only where they touch real strokes.

    Returns the 8-bit ink-up pixels with everything else set to 0 (and ``lut[0]`` is 0).
    """
    strong_from = int(lut.searchsorted(STRONG, side="left"))  # lut never decreases
    if strong_from > 255 or cv2.minMaxLoc(ink)[1] < strong_from:
        raise NoInk("no ink found: nothing stands out from the background")
    # Strong ink (lut >= STRONG) is also weak ink (lut > WEAK): each stroke lies inside
    # exactly one weak component.
    weak = _at_least(ink, int(lut.searchsorted(WEAK, side="right")))
    weak_count, weak_labels = cv2.connectedComponents(weak, connectivity=8, ltype=cv2.CV_32S)
    if weak_count == 2:  # one weak component, so it holds every stroke: the common case
        return cv2.bitwise_and(ink, weak)
    strong = _at_least(ink, strong_from)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8, ltype=cv2.CV_32S)
    kept = _strokes(strong, labels, stats)
    touching = _weak_components_of(kept, labels, stats, weak_labels, weak_count)
    if len(touching) == weak_count - 1:
        return cv2.bitwise_and(ink, weak)
    if len(touching) <= _MAX_LOOKUPS:
        mask = np.zeros_like(weak)
        for component in touching:
            mask |= cv2.compare(weak_labels, component, cv2.CMP_EQ)
        return cv2.bitwise_and(ink, mask)
    table = np.zeros(weak_count, dtype=bool)
    table[list(touching)] = True
    return np.where(table[weak_labels], ink, np.uint8(0))


def _strokes(strong: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Labels of the strong components that are the digit: not specks, not dark things cut
    by the frame, not a form's printed lines."""
    if len(stats) == 2:  # a single component: nothing to compare it with
        return _SOLE_COMPONENT
    areas = stats[1:, cv2.CC_STAT_AREA].copy()
    areas[_edge_objects(strong, labels, stats)] = 0
    kept = np.flatnonzero(areas >= SPECK_FRACTION * areas.max()) + 1
    if len(kept) > 1:
        kept = _without_form_lines(kept, labels, stats)
    return kept


def _edge_objects(strong: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Indices (into ``stats[1:]``) of dark things cut by the frame, not part of the digit: a
    finger, the table, a shadowed corner of a photo.

    They touch the image's edge and are far thicker than the strokes away from the edge; a
    digit's own strokes that reach the edge have the pen's width and are kept. Images whose
    ink all touches the edge (a tightly cropped digit) or none of it are left as they are.
    """
    height, width = labels.shape
    left, top = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    right = left + stats[1:, cv2.CC_STAT_WIDTH]
    bottom = top + stats[1:, cv2.CC_STAT_HEIGHT]
    at_edge = (left == 0) | (top == 0) | (right >= width) | (bottom >= height)
    if at_edge.all() or not at_edge.any():
        return np.zeros(0, dtype=np.intp)
    inside = np.flatnonzero(~at_edge)
    inside_areas = stats[1:, cv2.CC_STAT_AREA][inside]
    inside = inside[inside_areas >= SPECK_FRACTION * inside_areas.max()]  # strokes, not specks
    distance = cv2.distanceTransform(strong, cv2.DIST_L2, 3)
    radius = np.zeros(len(stats), dtype=np.float32)  # half the thickest part, per component
    np.maximum.at(radius, labels.ravel(), distance.ravel())
    stroke = float(radius[inside + 1].max())
    edge = np.flatnonzero(at_edge)
    return edge[radius[edge + 1] > EDGE_OBJECT_THICKNESS * stroke]


def _without_form_lines(kept: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """``kept`` less the printed lines of a form: a box drawn around the digit (a thin,
    rectangular outline enclosing all the other ink) and a rule under it (a long flat line
    below all the other ink). A digit's own parts are never both, so they stay; and when
    nothing else would remain, nothing is dropped.
    """
    left, top = stats[kept, cv2.CC_STAT_LEFT], stats[kept, cv2.CC_STAT_TOP]
    width, height = stats[kept, cv2.CC_STAT_WIDTH], stats[kept, cv2.CC_STAT_HEIGHT]
    right, bottom = left + width, top + height
    drop = np.zeros(len(kept), dtype=bool)
    for i, component in enumerate(kept.tolist()):
        others = np.arange(len(kept)) != i
        encloses = (
            (left[others] > left[i]).all()
            and (top[others] > top[i]).all()
            and (right[others] < right[i]).all()
            and (bottom[others] < bottom[i]).all()
        )
        if encloses and _is_outline(labels, stats[component], component):
            drop[i] = True
        elif _is_rule(stats[component], top[others].min(), bottom[others].max()):
            drop[i] = True
    return kept if drop.all() else kept[~drop]


def _is_rule(box: np.ndarray, ink_top: int, ink_bottom: int) -> bool:
    """Whether the component is a straight line under the rest of the ink, thin beside the
    digit's height: a form's rule. (A 5's or a 2's separate bottom stroke is curved or thick.)"""
    _, top, width, height, area = (int(v) for v in box[:5])
    return (
        top >= ink_bottom
        and width >= RULE_ASPECT * height
        and height <= RULE_THICKNESS * (ink_bottom - ink_top)
        and area >= RULE_FILL * width * height
    )


def _is_outline(labels: np.ndarray, box: np.ndarray, component: int) -> bool:
    """Whether nearly all of the component lies along its bounding box's edges (a frame), not
    across it (a 0 touches its box at four points only)."""
    left, top, width, height, area = (int(v) for v in box[:5])
    band = max(2, round(OUTLINE_BAND * min(width, height)))
    if width <= 2 * band or height <= 2 * band or area > OUTLINE_FILL * width * height:
        return False
    inner = labels[top + band : top + height - band, left + band : left + width - band]
    return int(np.count_nonzero(inner == component)) <= (1 - OUTLINE_SHARE) * area


def _weak_components_of(
    kept: np.ndarray,
    labels: np.ndarray,
    stats: np.ndarray,
    weak_labels: np.ndarray,
    weak_count: int,
) -> set[int]:
    if len(kept) > _MAX_LOOKUPS:
        table = np.zeros(len(stats), dtype=bool)
        table[kept] = True
        found = np.zeros(weak_count, dtype=bool)
        found[weak_labels[table[labels]]] = True
        return set(np.flatnonzero(found[1:]) + 1)
    touching: set[int] = set()
    for component in kept.tolist():
        # Its bounding box's top row holds at least one of its pixels: any one names its
        # weak component.
        left, top, width = (int(v) for v in stats[component, :3])
        row = labels[top, left : left + width]
        column = left + int(np.argmax(row == component))
        touching.add(int(weak_labels[top, column]))
    return touching


def _fit(kept: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """The ink scaled so that its box is 20 pixels on the longer side, 0..1 through ``lut``.

    The box is measured on clearly inked pixels (faint anti-aliasing halos would make every
    digit a little smaller than MNIST's), but the halo itself is kept: a margin around the box
    is resized with it.
    """
    box_from = int(lut.searchsorted(BOX_LEVEL, side="left"))
    left, top, width, height = cv2.boundingRect(_at_least(kept, box_from))
    scale = BOX / max(height, width)
    margin = math.ceil(MARGIN / scale)
    y0, x0 = max(top - margin, 0), max(left - margin, 0)
    region = cv2.LUT(kept[y0 : top + height + margin, x0 : left + width + margin], lut)
    return resize_lanczos(
        region,
        max(1, round(region.shape[1] * scale)),
        max(1, round(region.shape[0] * scale)),
    )


def _centre(fitted: np.ndarray) -> np.ndarray:
    """The fitted ink at its brightest 1, in a 28x28 canvas with its centre of mass at
    (14, 14). ``fitted`` is changed in place."""
    peak = float(fitted.max())
    if peak <= 0.0:
        raise NoInk("no ink found after resizing")
    np.divide(fitted, peak, out=fitted)  # at most 1: the peak divided by itself
    np.maximum(fitted, 0.0, out=fitted)  # Lanczos' negative lobes
    cy, cx = _centre_of_mass(fitted)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    dy, dx = round(CENTRE - cy), round(CENTRE - cx)
    # Paste with clipping: the halo may reach past the 28x28 edge, the ink does not.
    y0, x0 = max(dy, 0), max(dx, 0)
    y1 = min(dy + fitted.shape[0], SIZE)
    x1 = min(dx + fitted.shape[1], SIZE)
    canvas[y0:y1, x0:x1] = fitted[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
    return canvas
