"""A digit cropped to its own ink: its strokes, not the paper, run along the border.

The normaliser takes a band along an image's edges (``BORDER_SHARE`` of its shorter side)
for its paper. A crop cut at the ink's bounding box, as a form reader's segmentation cuts
it, has strokes crossing that band all round, so the band's median and spread describe half
paper, half ink: the paper's "noise" then swallows the ink and the image is answered no_ink.
Its outermost ring of pixels is mostly paper still: strokes touch it only where they reach
the edge. So an image in which the band finds no ink is measured again with its ring for the
border. A photograph's ring can find "ink" as well, against a sky or a wall, but that
"paper" is busy; so the ring's measurement is taken only where its paper is quiet.

A 1 so cropped has no paper ring: the stroke is most of the image and every side of it. Its
two levels are still plain, and which is ink shows in how they lie: the stroke is one piece,
the paper is what the box left over in two or more corners. Framed in that paper, it is a 1
on a sheet again. Only narrow images are read so: a photograph crop as plain and as
two-toned is never that narrow, and a narrow digit is a 1 or a 7 (docs/performance.md, "A 1
cropped to its ink").
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from service.imaging.measurement import BORDER_SHARE, MIN_CONTRAST, Measurement, pixel_histogram

# The band measured is BORDER_SHARE of the shorter side; a frame twice as wide holds it whole.
FRAME_SHARE = 2 * BORDER_SHARE
# Paper whose noise reaches the contrast that ink needs is not clean paper: photographs'
# rings that found "ink" were all noisier than this (docs/performance.md).
RING_MAX_NOISE = MIN_CONTRAST
# A crop with no paper ring is framed only when it is narrow (width / height), its two levels
# lie far apart (percentiles 2 and 98, of 255) and few pixels fall between them (the middle
# half of that span: a stroke's anti-aliased edges, where a photograph has tones).
NARROW = 0.5
MIN_SPREAD = 128.0
MAX_BETWEEN = 0.4
MIN_PIECE_SHARE = 0.01  # of the image: smaller bits of either level are edges, not pieces
FRAME_OF_HEIGHT = 0.5  # paper added round a framed crop, on each side


def ring_as_border(work: np.ndarray) -> np.ndarray:
    """``work`` framed by copies of its outermost ring of pixels, so that the border band
    ``measure`` reads is that ring's pixels. Only for measuring: the frame smears strokes that
    reach the edge outwards, so the pipeline goes on with ``work`` itself."""
    frame = math.ceil(FRAME_SHARE * min(work.shape)) + 1
    return cv2.copyMakeBorder(work, frame, frame, frame, frame, cv2.BORDER_REPLICATE)


def is_clean_paper(ring: Measurement) -> bool:
    """Whether the ring's measurement found ink on quiet paper."""
    return ring.lut is not None and ring.sigma < RING_MAX_NOISE


def framed_in_paper(work: np.ndarray) -> np.ndarray | None:
    """A narrow two-toned crop framed in its paper, the level whose pixels lie in more pieces
    than the other's; None when the crop is not narrow and plain, or the pieces do not tell."""
    height, width = work.shape
    if width > NARROW * height:
        return None
    levels = pixel_histogram(work)
    low, high = levels.percentiles((2.0, 98.0))
    spread, middle = high - low, (low + high) / 2
    if spread < MIN_SPREAD:
        return None
    darker, brighter = levels.standing_out(middle, spread / 4)
    if levels.total - darker - brighter > MAX_BETWEEN * levels.total:
        return None
    dark = work < middle
    dark_pieces, light_pieces = _pieces(dark), _pieces(~dark)
    if dark_pieces == light_pieces:
        return None
    paper = ~dark if dark_pieces < light_pieces else dark
    level = int(np.median(work[paper]))
    frame = math.ceil(FRAME_OF_HEIGHT * height)
    return cv2.copyMakeBorder(work, frame, frame, frame, frame, cv2.BORDER_CONSTANT, value=level)


def _pieces(mask: np.ndarray) -> int:
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    smallest = MIN_PIECE_SHARE * mask.size
    return int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= smallest))
