"""A sheet of paper on a darker surround: the sheet, not the surround, is the paper.

The normaliser takes an image's border for its paper. In a photo of a sheet on a desk, a scan
with the lid's dark margins or a photo of a screen inside its bezel, the border is the
surround instead: the sheet comes out as one huge bright "stroke" and the digit written on it
is lost (answered not_a_digit). When the bright side of such an image is one large, nearly
rectangular region with dark marks inside it, the image is cut to that region and measured
again, so that the sheet's own paper and ink are what the rest of the pipeline sees.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.statistics import MIN_INK_PIXELS, Measurement

PAGE_MIN_SHARE = 0.3  # of the image's pixels: a sheet, not a stroke (a bold digit covers less)
PAGE_MIN_FILL = 0.85  # of its rotated bounding box: a sheet's outline is a quadrilateral
PAGE_INSET = 0.04  # of its shorter side, trimmed off its edges: the sheet's shaded rim


def find_page(work: np.ndarray, measured: Measurement) -> np.ndarray | None:
    """The sheet's part of the 8-bit work image, or None when the image is not a sheet on a
    darker surround. Only asked when the border is the dark side (``measured`` says bright
    ink), as it is for white ink on black too: there the bright region is the digit."""
    if measured.inverted or measured.lut is None:
        return None
    # Half way from the surround to the sheet, as the stretch table has it: 0 to 1.
    middle = int(np.searchsorted(measured.lut, 0.5))
    _, bright = cv2.threshold(work, middle - 1, 1, cv2.THRESH_BINARY)
    if cv2.countNonZero(bright) < PAGE_MIN_SHARE * work.size:
        return None  # the common case, white ink on black: a labelling would cost ten times more
    _, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=4)
    sheet = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # bright pixels exist: label 1 does
    x, y, width, height, area = (int(v) for v in stats[sheet])
    if area < PAGE_MIN_SHARE * work.size:
        return None
    paper = np.equal(labels, sheet)
    contours, _ = cv2.findContours(paper.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea)
    filled = np.zeros_like(bright)
    cv2.drawContours(filled, [outline], 0, 1, thickness=cv2.FILLED)
    enclosed = cv2.countNonZero(filled)  # the sheet's pixels and the marks on it
    _, (box_width, box_height), _ = cv2.minAreaRect(outline)
    if enclosed < PAGE_MIN_FILL * box_width * box_height or enclosed - area < MIN_INK_PIXELS:
        return None  # not a quadrilateral, or nothing written on it
    return _cut_out(work, filled, paper, (x, y, width, height))


def _cut_out(
    work: np.ndarray, filled: np.ndarray, paper: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """The sheet within its box, its shaded rim trimmed off and everything round it (the
    surround in the corners of a turned sheet) painted the sheet's own paper level."""
    x, y, width, height = box
    rim = max(1, round(PAGE_INSET * min(width, height)))
    inside = cv2.erode(filled, np.ones((2 * rim + 1, 2 * rim + 1), np.uint8))
    level = int(np.median(work[paper]))
    sheet = np.where(inside.view(bool), work, np.uint8(level))
    return np.ascontiguousarray(sheet[y + rim : y + height - rim, x + rim : x + width - rim])
