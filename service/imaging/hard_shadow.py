"""A hard shadow (a phone's, a hand's) cast over part of a photographed page, lifted.

The lighting fit (lighting.py) models light that changes smoothly across the page; a
shadow's edge is a step, and the shadowed paper, darker than the lit paper by more than
the ink's threshold, becomes one large piece of ink that swallows the digit written
across it. The paper's own level is found where it lies under the ink: an opening (of the
ink-up image) wider than any stroke removes the strokes and keeps large plateaus, their
step edges included. A plateau that reaches the frame, covers a good part of the image, is
mostly one flat level, keeps a good part of the light and is clearly lighter than the ink,
on a page that is lit paper round it, is shadowed paper; the page under it is divided by
its darkening, as a document scanner's shadow removal does. A bold stroke of a digit
cropped close also survives the opening, but it is not flat (its soft edges and its own
shading spread its levels), it is nearly as dark as the ink, or it leaves no lit paper.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.histograms import median
from service.imaging.measurement import BRIGHTEST, MIN_CONTRAST, NOISE_SIGMAS, pixel_histogram

SHADOW_MIN_SIDE = 64  # pixels: a smaller image is a digit's crop or icon, not a photo
SHADOW_KERNEL_SHARE = 0.125  # of the shorter side: wider than any stroke of a framed digit
SHADOW_MIN_FRAME = 0.025  # of the frame's pixels standing out: the least a shadow that wide covers
SHADOW_MIN_AREA = 0.04  # of the image: a shadow is large, a bold stroke's remains are not
SHADOW_MIN_LIGHT = 0.3  # of the lit paper's light: a darker plateau is ink, not shade
SHADOW_MIN_FLAT = 0.6  # of a plateau's pixels but the pen's, at its level: paper, no stroke
SHADOW_FLAT_LEVELS = 8.0  # (of 255) how near its level a flat pixel is, at least
SHADOW_MARKS = 2 * MIN_CONTRAST  # levels the pen's marks in a shadow are darker than it


def lift_hard_shadow(ink: np.ndarray, lut: np.ndarray, sigma: float) -> np.ndarray:
    """``ink`` (ink up: dark ink on light paper, inverted) with shadowed paper brought back
    to the lit paper's level, or ``ink`` itself where no shadow reaches the frame.
    ``lut`` is its stretch table, ``sigma`` its paper's noise."""
    if min(ink.shape) < SHADOW_MIN_SIDE:
        return ink
    floor = int(np.searchsorted(lut, 0.0, side="right"))  # the paper's noise floor
    frame = np.concatenate((ink[0], ink[-1], ink[:, 0], ink[:, -1]))
    if np.count_nonzero(frame > floor + MIN_CONTRAST) < SHADOW_MIN_FRAME * frame.size:
        return ink  # the common case: paper all round the frame
    side = max(3, round(min(ink.shape) * SHADOW_KERNEL_SHARE))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    paper = cv2.morphologyEx(ink, cv2.MORPH_OPEN, kernel)
    # Near a plateau's level: within the paper's noise, but a border of strokes (a digit
    # cropped close) measures no paper noise.
    near = min(max(SHADOW_FLAT_LEVELS, NOISE_SIGMAS * sigma), MIN_CONTRAST)
    shade = _shade(ink, paper > floor + MIN_CONTRAST, floor, near)
    if shade is None:
        return ink
    mask, level, lit = shade
    region = cv2.dilate(mask, kernel).view(bool)
    pixels = ink[region].astype(np.float32)
    # Paper, lit or shaded, is its own light's level; ink is lit as the paper round it,
    # which the opening has. The opening rounds the shadow's corners off: there its paper
    # is the pixels at the shadow's level. No pixel is lifted more than a shadow could.
    shaded_paper = np.abs(pixels - level) <= near
    under = np.where(shaded_paper, pixels, np.minimum(pixels, paper[region] + near))
    under = np.clip(under, lit, _darkest(lit))
    lifted = 255.0 - (255.0 - pixels) * ((255.0 - lit) / (255.0 - under))
    out = ink.copy()
    out[region] = np.clip(np.rint(lifted), 0, 255).astype(np.uint8)
    return out


def _shade(
    ink: np.ndarray, plateaus: np.ndarray, floor: int, near: float
) -> tuple[np.ndarray, float, float] | None:
    """The plateaus that are shadowed paper (a uint8 mask), their level and the lit paper's
    level, or None."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(plateaus.view(np.uint8), connectivity=8)
    height, width = plateaus.shape
    x, y, w, h, area = (stats[1:, i] for i in range(5))
    touches = (x == 0) | (y == 0) | (x + w == width) | (y + h == height)
    candidates = np.flatnonzero(touches & (area >= SHADOW_MIN_AREA * height * width)) + 1
    if not len(candidates) or plateaus.all():
        return None
    lit = median(ink[~plateaus])
    if lit > floor:
        return None  # round the plateaus is no lit paper: strokes (a digit cropped close)
    (top,) = pixel_histogram(ink).percentiles((BRIGHTEST,))
    chosen, levels = [], []
    for label in candidates:
        inside = ink[labels == label]
        level = median(inside)
        own = np.count_nonzero(inside < level + SHADOW_MARKS)  # the pen's marks apart
        flat = np.count_nonzero(np.abs(inside - level) <= near) >= SHADOW_MIN_FLAT * own
        if flat and level <= min(top - SHADOW_MARKS, _darkest(lit)):
            chosen.append(label)
            levels.append(level)
    if not chosen:
        return None
    return np.isin(labels, chosen).astype(np.uint8), max(levels), lit


def _darkest(lit: float) -> float:
    """The darkest a shadow makes paper lit at ``lit`` (ink up)."""
    return 255.0 - SHADOW_MIN_LIGHT * (255.0 - lit)
