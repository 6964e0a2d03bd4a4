"""Strokes in grains: chalk on a board, a dry crayon or pencil on rough paper.

Such a stroke is not one piece of ink but a band of grains, and the speck rule (strokes.py)
would drop every grain under 8 % of the largest piece: parts of the digit vanish (a 9
loses its loop's side and reads 7). Grains lying within one of the model's pixels of the
strokes are taken in with them, step by step along the band, and the gaps between them, up
to about a model pixel wide, are closed, so that the model sees a stroke and not a row of
dots. Specks farther off, or too small to be grain, stay dropped; ink with only a grain
or two near it (a speck beside a stroke, dust) is not closed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

REACH = 0.05  # of the strokes' longer side: one pixel of the model's 20-pixel box
GRAIN_AREA = 0.05  # a grain covers at least this share of a square REACH on a side
STEPS = 3  # each step takes in the grains that close to those taken before
GRAINY = 3  # a stroke is grainy once this many grains were taken in...
CLOSING = 0.5  # ...and closed by a disc this share of REACH in radius (gaps up to REACH)


def with_grains(
    kept: np.ndarray, labels: np.ndarray, stats: np.ndarray, specks: np.ndarray
) -> tuple[np.ndarray, int]:
    """``kept`` (labels of the strokes' components) and the ``specks`` lying close to them,
    and the radius in pixels of the gaps to close between them: 0 unless the strokes are
    grainy. ``specks`` is a mask over ``stats[1:]``."""
    reach = _one_model_pixel(stats[kept])
    candidates = np.zeros(len(stats), dtype=bool)
    candidates[1:] = specks & (stats[1:, cv2.CC_STAT_AREA] >= GRAIN_AREA * reach * reach)
    if reach < 2 or not candidates.any():  # a small image: one of its pixels is the model's
        return kept, 0
    taken = np.zeros(len(stats), dtype=bool)
    taken[kept] = True
    square = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)  # a model pixel is square
    grains = 0
    for _ in range(STEPS):
        near = cv2.dilate(taken[labels].view(np.uint8), square)
        found = np.zeros(len(stats), dtype=bool)
        found[labels[near > 0]] = True
        found &= candidates
        if not found.any():
            break
        taken |= found
        candidates &= ~found
        grains += int(np.count_nonzero(found))
    closing = round(CLOSING * reach) if grains >= GRAINY else 0
    return np.flatnonzero(taken), closing


def close_gaps(ink: np.ndarray, radius: int) -> np.ndarray:
    """``ink`` (8-bit, ink bright) with the gaps between its grains filled, up to about twice
    ``radius`` pixels wide; a stroke's outline stays where it was (a closing, not a dilation)."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(ink, cv2.MORPH_CLOSE, disc)


def _one_model_pixel(boxes: np.ndarray) -> int:
    """How many pixels of the image one pixel of the model's image will be, from the kept
    components' boxes (their union is the digit's box)."""
    left, top = boxes[:, cv2.CC_STAT_LEFT], boxes[:, cv2.CC_STAT_TOP]
    right = left + boxes[:, cv2.CC_STAT_WIDTH]
    bottom = top + boxes[:, cv2.CC_STAT_HEIGHT]
    side = max(int(right.max() - left.min()), int(bottom.max() - top.min()))
    return math.ceil(REACH * side)
