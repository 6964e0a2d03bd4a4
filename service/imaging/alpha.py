"""Transparency flattened onto paper: an image's alpha turned into the luminance the rest of
the pipeline reads, whether the drawing is in the alpha (a canvas's export), or the paper
was keyed out (a GIF's transparent colour, a PNG-8's tRNS)."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from service.imaging.histograms import PixelHistogram
from service.imaging.measurement import BRIGHTEST, DARKEST, MIN_CONTRAST

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # a pixel's four neighbours
# Levels between a keyed drawing's fringe and its core: what tells the luminance carries the
# shape (a colour keyed out) from strokes of one colour (the shape in the alpha).
KEYED_FRINGE_CONTRAST = 48
OPAQUE = 255


def luminance_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """8-bit luminance and alpha; ``image`` is closed once they are read, so that at the
    pixel limit its 160 MB are not held beside the flattening's floats."""
    if image.mode in ("RGBA", "LA"):
        alpha = np.asarray(image.getchannel("A"))
        luminance = np.asarray(image.convert("L"))
    else:  # premultiplied or palette alpha: Pillow's own conversion
        luminance, alpha = (np.asarray(band) for band in image.convert("LA").split())
    image.close()
    return luminance, alpha


def flatten_alpha(luminance: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite 8-bit luminance on a background that contrasts with the ink: transparent
    means background.

    When few pixels are opaque they are the strokes (a canvas that draws ink only through
    alpha), so the background is chosen against their colour. When most are opaque they
    include the paper, and transparency takes the paper's colour, unless it is holes cut in
    a plate of one flat colour, away from the frame (a stencil, a knockout): they show
    whatever lies behind, and are given a colour against the plate's too. Transparent
    corners, margins or strips reach the frame: they are the paper's. A drawing whose
    paper was keyed out (``_keyed_paper``) is put back on that paper.
    """
    if alpha.min() == OPAQUE:
        return luminance.astype(np.float32)
    # levels * weight + background * (1 - weight), in two image-sized float arrays rather
    # than six: at the pixel limit each is 160 MB (docs/performance.md, "A transparent
    # drawing at the pixel limit").
    weight = alpha.astype(np.float32)
    weight /= 255.0
    total = float(weight.sum())
    if total <= 0.0:
        return np.zeros(luminance.shape, np.float32)  # fully transparent: nothing drawn
    opaque = weight > 0.5
    background = _keyed_paper(luminance, alpha, opaque)
    if background is None and opaque.mean() >= 0.5 and not _holes_in_a_plate(luminance, alpha):
        background = float(np.median(luminance[opaque]))
    flattened = luminance.astype(np.float32)
    flattened *= weight
    if background is None:
        ink = float(flattened.sum() / total)
        background = 255.0 if ink < 128.0 else 0.0
    np.subtract(1.0, weight, out=weight)
    weight *= background
    flattened += weight
    return flattened


def _keyed_paper(luminance: np.ndarray, alpha: np.ndarray, opaque: np.ndarray) -> float | None:
    """The paper's level where one colour was made transparent (a GIF's transparency, a
    PNG-8's tRNS key), else None.

    Such alpha is all or nothing, and the shape is in the luminance: the opaque pixels along
    the transparency are the strokes' anti-aliased fringe, between the keyed paper and the
    strokes' core. Taken for strokes drawn through alpha, a thin digit's fringe outweighed its
    core and the transparency turned black (docs/performance.md, "A transparent GIF").
    Strokes drawn through all-or-nothing alpha are one colour, fringe and core alike.
    """
    if cv2.countNonZero(cv2.inRange(alpha, 1, 254)):
        return None
    solid = opaque.view(np.uint8)
    inner = cv2.erode(solid, _CROSS)
    fringe, core = _histogram(luminance, solid - inner), _histogram(luminance, inner)
    if not fringe.total or not core.total:
        return None
    level, inside = fringe.percentiles((50.0,))[0], core.percentiles((50.0,))[0]
    if abs(level - inside) < KEYED_FRINGE_CONTRAST:
        return None
    # The key lies beyond every fringe pixel. A palette keeps its colour under the
    # transparency (Pillow's RGBA of a GIF); other files may hold anything there.
    hidden = _histogram(luminance, 1 - solid).percentiles((50.0,))[0]
    if level > inside:
        return max(hidden, float(fringe.brightest()))
    return min(hidden, float(fringe.darkest()))


def _holes_in_a_plate(luminance: np.ndarray, alpha: np.ndarray) -> bool:
    """Whether the transparency lies inside the image, its frame all opaque, and the fully
    opaque pixels are one colour, bar a few specks: they hold no shape of their own, so
    the drawing is in the alpha. (A cut-out's soft edge is partly transparent, and holds
    whatever lay under the hole.)"""
    if min(alpha[0].min(), alpha[-1].min(), alpha[:, 0].min(), alpha[:, -1].min()) < OPAQUE:
        return False
    solid = _histogram(luminance, cv2.inRange(alpha, OPAQUE, OPAQUE))
    if not solid.total:
        return False
    low, high = solid.percentiles((DARKEST, BRIGHTEST))
    return high - low < MIN_CONTRAST


def _histogram(pixels: np.ndarray, mask: np.ndarray) -> PixelHistogram:
    """The 8-bit pixels where ``mask`` is 1."""
    counts = cv2.calcHist([pixels], [0], mask, [256], [0, 256])
    return PixelHistogram(counts.ravel().astype(np.int64))
