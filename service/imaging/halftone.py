"""A halftone read as the greys it stands for: a 1-bit image dithered by its scanner or editor.

A black-and-white image (a fax, a scanner's "black and white" mode, a 1-bit PNG or TIFF)
draws the grey of a stroke's soft edge as a scatter of single black and white pixels. Each
is a piece of ink of its own: the pipeline counts them as specks, and beside them a digit's
solid strokes look thick enough to be a finger cut by the frame (edges.py), or its ink
comes out in many pieces (shape.py). An image reduced to the work side has its dots
averaged already; a smaller one is smoothed by about a pixel, as the reduction would, so
that the dots become grey again. A drawn or thresholded two-level image (a pen's jagged
edge) has no such scatter and is left as it is, as is one too small to hold a halftone.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_SIDE = 32  # a smaller two-level image is pixel art or a thumbnail: each pixel is meant
DOT_AREA = 2  # pixels: a halftone's dot, one or two pixels
MIN_DOTS = 4  # dots of either level that make a scatter: a drawn or thresholded edge has 0-1
SMOOTHING = 1.0  # Gaussian sigma in pixels: what a halving by area averaging does


def smooth_halftone(work: np.ndarray) -> np.ndarray:
    """``work`` (2-D uint8, not reduced) smoothed when it is a dithered two-level image;
    otherwise ``work`` itself."""
    if min(work.shape) < MIN_SIDE:
        return work
    low, high, _, _ = cv2.minMaxLoc(work)
    if high - low < 1 or cv2.countNonZero(cv2.inRange(work, low + 1, high - 1)):
        return work  # one level, or more than two: not a 1-bit image
    dark = cv2.compare(work, low, cv2.CMP_EQ)  # type: ignore[call-overload]  # stubs: no scalars
    if _dots(dark) + _dots(cv2.bitwise_not(dark)) < MIN_DOTS:
        return work
    return cv2.GaussianBlur(work, (0, 0), SMOOTHING)


def _dots(mask: np.ndarray) -> int:
    """Pieces of ``mask`` (0 or 255) of at most DOT_AREA pixels."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return int(np.count_nonzero(stats[1:count, cv2.CC_STAT_AREA] <= DOT_AREA))
