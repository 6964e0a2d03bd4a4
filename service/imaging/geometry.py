"""Where the ink goes: the MNIST passthrough, the ink fitted into a 20x20 box and centred by
mass in 28x28 (MNIST's own convention)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from service.contract import SIDE
from service.errors import NoInk
from service.imaging.dots import MAX_DIGIT_PIECES, MAX_DOTS, as_dot_grid
from service.imaging.histograms import median
from service.imaging.measurement import MIN_CONTRAST, border_pixels
from service.imaging.resampling import resize_lanczos
from service.imaging.strokes import at_least

SIZE = SIDE  # model input side
BOX = 20  # MNIST fits the ink into a 20x20 box...
CENTRE = 14.0  # ...and puts its centre of mass here (measured on MNIST test: 13.99, 14.01)
BOX_LEVEL = 0.3  # pixels at least this inked define the 20x20 box
MARGIN = 3  # output pixels of faint halo kept around the box
PASSTHROUGH_BACKGROUND = 64.0  # a 28x28 image on a darker border may already be MNIST


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    if image.shape[1] == 2:
        # cv2.moments (OpenCV 5.1) miscounts float images exactly two columns wide (m00 can
        # come out 0: a 500); a column of zeros changes no moment.
        image = cv2.copyMakeBorder(image, 0, 0, 0, 1, cv2.BORDER_CONSTANT, value=0)
    moments = cv2.moments(image)
    return moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]


def already_mnist(gray: np.ndarray, background: float) -> np.ndarray | None:
    """A 28x28 image on a dark background that is centred like MNIST passes untouched, so the
    service answers exactly what offline evaluation of the same pixels answers.
    ``background``: the median of its border, in 8-bit levels."""
    if gray.dtype != np.uint8:
        background = median(border_pixels(gray))
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


def fit_box(kept: np.ndarray, lut: np.ndarray, pieces: int) -> np.ndarray:
    """The ink scaled so that its box is 20 pixels on the longer side, 0..1 through ``lut``.

    The box is measured on clearly inked pixels (faint anti-aliasing halos would make every
    digit a little smaller than MNIST's), but the halo itself is kept: a margin around the box
    is resized with it. Ink in more ``pieces`` than a digit's may be a digit printed in dots:
    then its grid's bitmap is fitted instead (dots.py).
    """
    box_from = int(lut.searchsorted(BOX_LEVEL, side="left"))
    if MAX_DIGIT_PIECES < pieces <= MAX_DOTS:  # faint ink joins dots, never splits them
        kept = as_dot_grid(kept, box_from)
    return _fitted(kept, lut, box_from)


def _fitted(kept: np.ndarray, lut: np.ndarray, box_from: int) -> np.ndarray:
    left, top, width, height = cv2.boundingRect(at_least(kept, box_from))
    scale = BOX / max(height, width)
    margin = math.ceil(MARGIN / scale)
    y0, x0 = max(top - margin, 0), max(left - margin, 0)
    region = cv2.LUT(kept[y0 : top + height + margin, x0 : left + width + margin], lut)
    return resize_lanczos(
        region,
        max(1, round(region.shape[1] * scale)),
        max(1, round(region.shape[0] * scale)),
    )


def centre_by_mass(fitted: np.ndarray) -> np.ndarray:
    """The fitted ink at its brightest 1, in a 28x28 canvas with its centre of mass at
    (14, 14). ``fitted`` is changed in place."""
    peak = cv2.minMaxLoc(fitted)[1]  # a third of ndarray.max's cost on 20x20
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
