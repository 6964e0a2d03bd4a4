"""A page's printed lines taken out of the ink: a notebook's rules, its margin, a grid,
fainter than the pen. They run straight across the image, further than any stroke, and
they touch the digit, so they would be kept with its strokes and stretch its box across the
page. The pixels where the pen crosses them stay. A page photographed a few degrees turned
is levelled (levelling.py) before its lines are looked for; ``line_slope`` finds how far,
for the form lines of joined.py and forms.py too.

Images are 8-bit, 255 for ink, at the work image's size.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.levelling import Levelled

LINE_REACH = 1.25  # faint ink this many times the strong ink's box (+2) may hold a page's lines
LINE_LENGTH = 0.6  # of the image's side: a straight run of ink this long across it is printed...
LINE_THICKNESS = 0.025  # ...if it is at most this thin (of the shorter side, 2 pixels at least)
RULE_SPAN = 0.75  # rows (a box's columns) this full of the pen's ink, thin, are printed lines
TILT_MAX = 5.0  # degrees: a form photographed this far off level is levelled to find its lines
TILT_STEP = 0.25  # degrees between the slants a line is looked for at


def line_thickness(height: int, width: int) -> int:
    """How thick a printed line is at most, in pixels of an image this size."""
    return max(2, round(LINE_THICKNESS * min(height, width))) + 1


def without_printed_lines(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """``weak`` less the thin straight lines printed on the paper (a notebook's rules, its
    margin, a grid fainter than the pen) except where the pen crossed them. Looked for only
    when the faint ink reaches well beyond the strong ink, as a page's lines do and a
    stroke's soft edge does not; again on the page levelled when more faint ink is left
    than lay on level lines and it still reaches that far (a page photographed turned)."""
    if not _reaches_beyond(weak, strong):
        return weak
    lines = cv2.bitwise_or(*_page_lines(weak, *weak.shape))
    weak = cv2.subtract(weak, cv2.subtract(lines, strong))
    faint = cv2.subtract(weak, strong)
    if cv2.countNonZero(faint) <= cv2.countNonZero(lines) or not _reaches_beyond(weak, strong):
        return weak  # the lines lay level, or none is left
    slope = line_slope(faint)
    if slope is None:
        return weak
    level = Levelled(weak.shape, slope)
    rows, columns = _page_lines(level.apply(weak), *weak.shape)
    return cv2.subtract(weak, cv2.subtract(level.undo(rows | columns), strong))


def _reaches_beyond(weak: np.ndarray, strong: np.ndarray) -> bool:
    """Whether the faint ink reaches well beyond the strong ink's box, either way."""
    _, _, weak_width, weak_height = cv2.boundingRect(weak)
    _, _, strong_width, strong_height = cv2.boundingRect(strong)
    return (
        weak_width > LINE_REACH * strong_width + 2 or weak_height > LINE_REACH * strong_height + 2
    )


def _page_lines(weak: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The thin straight runs of ``weak`` across ``LINE_LENGTH`` of an image ``height`` x
    ``width`` (before any levelling): along the rows, and along the columns."""
    thick = line_thickness(height, width)
    rows = _thin_runs(weak, (round(LINE_LENGTH * width), 1), (1, thick))
    return rows, _thin_runs(weak, (1, round(LINE_LENGTH * height)), (thick, 1))


def _thin_runs(ink: np.ndarray, run: tuple[int, int], across: tuple[int, int]) -> np.ndarray:
    """Straight runs of ``ink`` at least ``run`` (width, height) long, less their parts as
    thick as ``across``: the lines, not the blots they pass through."""
    runs = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones(run[::-1], np.uint8))
    thick = cv2.morphologyEx(runs, cv2.MORPH_OPEN, np.ones(across[::-1], np.uint8))
    return cv2.subtract(runs, thick)


def line_slope(ink: np.ndarray, thick: int | None = None) -> float | None:
    """The slope (rows a column) of a thin straight line of ``ink`` along ``LINE_LENGTH`` of
    the width within ``TILT_MAX`` of level, or None: a form's or a page's line photographed
    turned. Only the ink no thicker than a line (``thick``: by default as in an image of
    this size) votes, and only when the ink spans ``RULE_SPAN`` of the width: votes from
    all the ink of a digit cropped tight cost about as much as the rest of its
    preparation, and its pen is mostly thicker than a line."""
    height, width = ink.shape
    if cv2.boundingRect(ink)[2] < RULE_SPAN * width:
        return None
    thick = thick or line_thickness(height, width)
    upright = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((thick + 1, 1), np.uint8))
    thin = cv2.subtract(ink, upright)
    least = round(LINE_LENGTH * width)
    if cv2.countNonZero(thin) < least:
        return None
    step, most = np.deg2rad(TILT_STEP), np.deg2rad(TILT_MAX)
    found = cv2.HoughLines(
        thin, 1, step, least, min_theta=np.pi / 2 - most, max_theta=np.pi / 2 + most
    )
    if found is None or not len(found):  # OpenCV gives either when no line has the votes
        return None
    rho, theta = found[0, 0].tolist()  # the line with the most votes: x cos + y sin = rho
    return _fitted_slope(thin, rho, theta, thick)


def _fitted_slope(thin: np.ndarray, rho: float, theta: float, thick: int) -> float | None:
    """The slope of the line of ``thin`` ink within ``thick`` pixels of (``rho``, ``theta``),
    fitted through the middle of each column where it is no thicker than a line, for a
    slope finer than its votes give; None if it is so along less than ``LINE_LENGTH`` of
    the width, or lies level, needing no levelling."""
    width = thin.shape[1]
    ends = (rho - np.array([0, width]) * np.cos(theta)) / np.sin(theta)  # its rows at x = 0, W
    top = max(int(ends.min()) - thick, 0)
    rows, columns = np.nonzero(thin[top : int(ends.max()) + thick + 1])
    rows += top
    on_line = np.abs(columns * np.cos(theta) + rows * np.sin(theta) - rho) <= thick
    rows, columns = rows[on_line], columns[on_line]
    counts = np.bincount(columns, minlength=width)
    alone = np.flatnonzero((counts > 0) & (counts <= thick))
    if len(alone) < max(LINE_LENGTH * width, 2):  # two columns make a slope
        return None
    middles = np.bincount(columns, weights=rows, minlength=width)[alone] / counts[alone]
    across = alone - alone.mean()
    slope = float(np.dot(across, middles) / np.dot(across, across))  # least squares
    return slope if abs(slope) * width >= 0.5 else None  # else levelling moves no pixel
