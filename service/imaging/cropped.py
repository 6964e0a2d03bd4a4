"""A digit cropped to its own ink: its strokes, not the paper, run along the border.

The normaliser takes a band along an image's edges (``BORDER_SHARE`` of its shorter side)
for its paper. A crop cut at the ink's bounding box, as a form reader's segmentation cuts
it, has strokes crossing that band all round, so the band's median and spread describe half
paper, half ink: the paper's "noise" then swallows the ink and the image is answered no_ink.
Its outermost ring of pixels is mostly paper still: strokes touch it only where they reach
the edge. So an image in which the band finds no ink is measured again with its ring for the
border. A photograph's ring can find "ink" as well, against a sky or a wall, but that
"paper" is busy; so the ring's measurement is taken only where its paper is quiet.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from service.imaging.statistics import BORDER_SHARE, MIN_CONTRAST, Measurement

# The band measured is BORDER_SHARE of the shorter side; a frame twice as wide holds it whole.
FRAME_SHARE = 2 * BORDER_SHARE
# Paper whose noise reaches the contrast that ink needs is not clean paper: photographs'
# rings that found "ink" were all noisier than this (docs/performance.md).
RING_MAX_NOISE = MIN_CONTRAST


def ring_as_border(work: np.ndarray) -> np.ndarray:
    """``work`` framed by copies of its outermost ring of pixels, so that the border band
    ``measure`` reads is that ring's pixels. Only for measuring: the frame smears strokes that
    reach the edge outwards, so the pipeline goes on with ``work`` itself."""
    frame = math.ceil(FRAME_SHARE * min(work.shape)) + 1
    return cv2.copyMakeBorder(work, frame, frame, frame, frame, cv2.BORDER_REPLICATE)


def is_clean_paper(ring: Measurement) -> bool:
    """Whether the ring's measurement found ink on quiet paper."""
    return ring.lut is not None and ring.sigma < RING_MAX_NOISE
