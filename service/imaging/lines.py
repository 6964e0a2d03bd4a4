"""A page's printed lines taken out of the ink: a notebook's rules, its margin, a grid. They
run straight across the image, further than any stroke, and they touch the digit, so they
would be kept with its strokes and stretch its box across the page. The pixels where the
pen crosses them stay.

Images are 8-bit, 255 for ink, at the work image's size.
"""

from __future__ import annotations

import cv2
import numpy as np

LINE_REACH = 1.25  # faint ink this many times the strong ink's box (+2) may hold a page's lines
LINE_LENGTH = 0.6  # of the image's side: a straight run of ink this long across it is printed...
LINE_THICKNESS = 0.025  # ...if it is at most this thin (of the shorter side, 2 pixels at least)


def line_thickness(height: int, width: int) -> int:
    """How thick a printed line is at most, in pixels of an image this size."""
    return max(2, round(LINE_THICKNESS * min(height, width))) + 1


def without_printed_lines(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """``weak`` less the thin straight lines printed on the paper (a notebook's rules, its
    margin, a grid fainter than the pen) except where the pen crossed them. Looked for only
    when the faint ink reaches well beyond the strong ink, as a page's lines do and a
    stroke's soft edge does not."""
    _, _, weak_width, weak_height = cv2.boundingRect(weak)
    _, _, strong_width, strong_height = cv2.boundingRect(strong)
    reaches = weak_width > LINE_REACH * strong_width + 2
    if not reaches and weak_height <= LINE_REACH * strong_height + 2:
        return weak
    height, width = weak.shape
    thick = line_thickness(height, width)
    rows = _thin_runs(weak, (round(LINE_LENGTH * width), 1), (1, thick))
    columns = _thin_runs(weak, (1, round(LINE_LENGTH * height)), (thick, 1))
    return cv2.subtract(weak, cv2.subtract(rows | columns, strong))


def _thin_runs(ink: np.ndarray, run: tuple[int, int], across: tuple[int, int]) -> np.ndarray:
    """Straight runs of ``ink`` at least ``run`` (width, height) long, less their parts as
    thick as ``across``: the lines, not the blots they pass through."""
    runs = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones(run[::-1], np.uint8))
    thick = cv2.morphologyEx(runs, cv2.MORPH_OPEN, np.ones(across[::-1], np.uint8))
    return cv2.subtract(runs, thick)
