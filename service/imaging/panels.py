"""Solid panels apart from the digit: a screenshot's button, a message bubble, a colour bar.

A screenshot of a drawing app or a chat keeps its coloured buttons and bubbles: a blue
"Send" button is mid-grey, strong enough to be ink, a separate piece that the fit puts
under the digit as a bar (27 of 100 digits read in a phone screenshot, against 98 without
its buttons; docs/performance.md, "A screenshot's buttons"). A panel is filled (its label's
letters leave holes in it), wider than high, and of one flat tone far lighter than the
pen's darkest: a digit's separate part (a 5's flag) is the pen's own ink. strokes.py drops
them.
"""

from __future__ import annotations

import cv2
import numpy as np

PANEL_FILL = 0.75  # of its bounding box, at least: filled, its label's letters cut out
PANEL_ASPECT = 1.5  # width / height, at least: a button or a bubble lies flat
PANEL_TONE = 0.65  # its darkest ink is at most this share of the pen's darkest


def without_panels(
    kept: np.ndarray, labels: np.ndarray, stats: np.ndarray, ink: np.ndarray, lut: np.ndarray
) -> np.ndarray:
    """``kept`` less the solid panels among them: filled, lying flat, and no darker than
    PANEL_TONE of the darkest ink of the other pieces (``ink``: 8-bit, ink up; ``lut``:
    how inked each level is). When every piece could be a panel there is no pen to compare
    with, and nothing is dropped."""
    boxes = stats[kept]
    width, height = boxes[:, cv2.CC_STAT_WIDTH], boxes[:, cv2.CC_STAT_HEIGHT]
    flat = width >= PANEL_ASPECT * height
    candidates = flat & (boxes[:, cv2.CC_STAT_AREA] >= PANEL_FILL * width * height)
    if not candidates.any() or candidates.all():
        return kept
    tone = np.array([lut[_darkest(labels, stats, ink, int(piece))] for piece in kept])
    panels = candidates & (tone <= PANEL_TONE * tone[~candidates].max())
    return kept[~panels]


def _darkest(labels: np.ndarray, stats: np.ndarray, ink: np.ndarray, component: int) -> int:
    """The strongest ink level of one component (ink up: the darkest in the image)."""
    left, top, width, height = (int(value) for value in stats[component, :4])
    window = (slice(top, top + height), slice(left, left + width))
    mine = cv2.compare(labels[window], component, cv2.CMP_EQ)  # type: ignore[call-overload]
    return int(cv2.minMaxLoc(ink[window], mask=mine)[1])
