"""A small image enlarged by repeating its pixels is read at the size it was made at.

A digit made on a small grid (an 8x8 sensor, a pixel font, a tiny drawing canvas) is often
shown and saved enlarged by whole pixels, each one a square block. Fitted into MNIST's
20-pixel box, the blocks keep their staircase edges, and such digits read worse than the
small image itself, which the fit enlarges smoothly (docs/performance.md, "A small image
enlarged by repeating pixels"). The small image is exactly recoverable: each block is one of
its pixels.
"""

from __future__ import annotations

import math

import numpy as np

MIN_SIDE = 4  # a smaller source has nothing to read: such an image is kept as sent
# A larger source reads as well enlarged: the fit reduces its blocks with antialiasing.
MAX_SIDE = 16
QUICK_PROBES = 8  # rows (and columns) looked at to rule out most images at once
# Lines along which the block boundaries are found: more than two per block of a source
# MAX_SIDE pixels wide, so that every block is crossed by one.
PROBES = 2 * MAX_SIDE + 1


def native_pixels(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (2-D uint8) reduced to its source when it is a source of MIN_SIDE to
    MAX_SIDE pixels a side enlarged by a whole factor; otherwise ``pixels`` itself.

    Nearly every image has detail one pixel high somewhere among a few rows, and is ruled out
    by a few row comparisons; only an image of flat blocks is compared whole."""
    height, width = pixels.shape
    if max(height, width) // math.gcd(height, width) > MAX_SIDE:  # no whole factor fits
        return pixels
    if min(height, width) < 2 * MIN_SIDE or _fine_grained(pixels) or _fine_grained(pixels.T):
        return pixels
    factor = _block_side(pixels)
    if factor < 2 or min(height, width) // factor < MIN_SIDE:
        return pixels
    if max(height, width) // factor > MAX_SIDE:
        return pixels
    source = pixels[::factor, ::factor]
    blocks = pixels.reshape(height // factor, factor, width // factor, factor)
    if not np.array_equal(blocks, np.broadcast_to(source[:, None, :, None], blocks.shape)):
        return pixels
    return np.ascontiguousarray(source)


def _fine_grained(pixels: np.ndarray) -> bool:
    """True when, at one of a few rows, the rows above and below both differ from it: detail
    one pixel high, which an image enlarged by repeating rows cannot have. Rows compared as
    bytes: a tenth of the cost of numpy's comparisons on rows this short."""
    height = pixels.shape[0]
    for probe in range(QUICK_PROBES):
        row = 1 + probe * (height - 3) // (QUICK_PROBES - 1)
        if pixels[row - 1].tobytes() != pixels[row].tobytes() != pixels[row + 1].tobytes():
            return True
    return False


def _block_side(pixels: np.ndarray) -> int:
    """The largest block side that every change of value along the probe lines, and the
    image's sides, are multiples of. For a small enough source the probes cross every block,
    so this is its enlargement factor; for anything else the whole comparison refutes it."""
    height, width = pixels.shape
    probes = np.arange(PROBES)
    columns = pixels[:, probes * (width - 1) // (PROBES - 1)]
    rows = pixels[probes * (height - 1) // (PROBES - 1)]
    down = np.flatnonzero(np.any(columns[1:] != columns[:-1], axis=1)) + 1
    across = np.flatnonzero(np.any(rows[:, 1:] != rows[:, :-1], axis=0)) + 1
    return int(np.gcd.reduce(np.concatenate(([height, width], down, across))))
