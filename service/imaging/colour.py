"""Ink as bright as its paper, read by its colour: red ink on green paper.

Its luminance, all the pipeline reads, can be the paper's, and the image is then blank. Asked
only once the luminance found no ink, this decodes the image again in colour and projects its
colours on the axis along which they differ most (docs/performance.md, "Ink as bright as its
paper").
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Collection

import numpy as np
from PIL import Image

from service.imaging.decode import open_image
from service.imaging.measurement import MIN_CONTRAST
from service.imaging.resampling import WORK_SIDE, shrink_to

logger = logging.getLogger("service.imaging")

_COLOUR_MODES = frozenset({"RGB", "P", "CMYK", "YCbCr"})  # colour without alpha, as RGB
_GREY_AXIS = np.full(3, 1 / math.sqrt(3), dtype=np.float32)
_CHROMA_ONLY = 0.9  # an axis this close to grey is luminance, already measured
_COLOUR_SAMPLE = 4096  # pixels enough to find the axis along which an image's colours differ
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
_SAME_BRIGHTNESS = 2 * MIN_CONTRAST  # ink as bright as paper: the 1-99 % luminance spread


def decode_colour_contrast(
    data: bytes, allowed_formats: Collection[str], max_pixels: int
) -> np.ndarray | None:
    """The image's colours projected on the axis along which they differ most, 0..255 as
    float32, at most ``WORK_SIDE`` on a side: red ink on green paper can be as bright as the
    paper, and its grayscale image blank. Asked only once the luminance found no ink. None
    when the image has no colour, its brightness varies (busy, as a photograph is), or its
    colours differ only in brightness."""
    if not _has_colour(data):
        return None  # from the header: a gray image is not decoded again
    image = open_image(data, allowed_formats, max_pixels, colour=True)
    try:
        rgb = np.asarray(image.convert("RGB"))
    except Exception:  # its luminance was read: without a colour view it stays no_ink
        logger.debug("no colour view of a %s image", image.mode, exc_info=True)
        return None
    rgb = shrink_to(rgb, WORK_SIDE)  # the projection then costs no more than the pipeline
    colours = rgb.reshape(-1, 3).astype(np.float32)
    sample = colours[:: max(1, len(colours) // _COLOUR_SAMPLE)]
    darkest, brightest = np.percentile(sample @ _LUMA, (1.0, 99.0))
    if brightest - darkest > _SAME_BRIGHTNESS or np.ptp(sample, axis=0).max() < MIN_CONTRAST:
        return None  # busy, or of one colour: nothing stands out in colour either
    centre = sample.mean(axis=0)
    _, axes = np.linalg.eigh(np.cov(sample - centre, rowvar=False))
    axis = axes[:, -1].astype(np.float32)  # eigh sorts by variance: the last differs most
    if abs(float(axis @ _GREY_AXIS)) > _CHROMA_ONLY:
        return None
    projected = (colours - centre) @ axis + np.float32(127.5)
    return np.clip(projected, 0.0, 255.0).reshape(rgb.shape[:2])


def _has_colour(data: bytes) -> bool:
    """Whether the image's header says colour without alpha (no pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.mode in _COLOUR_MODES and "transparency" not in image.info
    except Exception:  # it was decoded once already: unreadable here only means no colour
        return False
