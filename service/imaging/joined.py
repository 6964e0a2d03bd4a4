"""A form's printed lines as dark as the pen that the digit touches or crosses: the line it
is written on, or the box round it. One piece with the digit, they would be kept with its
strokes (forms.py judges only separate pieces) and stretch its box across the form. They are
found as thin bands of rows (and a box's columns) of the pen's ink across most of the image;
the pixels where the pen touches or crosses them stay. A form photographed a few degrees
turned is levelled (levelling.py) before its lines are looked for.

Images are 8-bit, 255 for ink, at the work image's size.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.levelling import Levelled
from service.imaging.lines import RULE_SPAN, line_slope, line_thickness

RULE_EDGE_SPAN = 0.3  # rows next to one this full of the pen's ink are its blurred edges
RULE_EDGE = 2  # rows of faint edge either side of such a line, dropped with it
RULE_MARGIN = 0.05  # a line written on runs this far (of the width) past the rest each side,...
RULE_LENGTH = 1.0  # ...is this many times as long as the rest is high (a 1's foot is not),...
RULE_THIN = 0.1  # ...at most this thick beside the rest's height (a 4's bar in 8x8 is not)
RULE_FOOT = 0.35  # of the ink's height above a line or box, how far past it a foot may reach
BOX_INSIDE = 0.9  # of a box's inner width: what the digit in it spans at most
LEVELLED_JAG = 1  # rows a levelled line strays from its band (pixels move by whole rows)

Bands = list[tuple[int, int]]  # (start, stop) of each band of rows or columns


def without_joined_lines(strong: np.ndarray, weak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``strong`` and ``weak`` less a form's printed lines as dark as the pen that the digit
    touches or crosses, so one piece with it, which forms.py's tests of whole pieces never
    see: the line it is written on, or the box round it. Both are found as thin bands of
    rows of ink across most of the image (the line also across the ink's own columns); the
    pixels where the pen touches or crosses them stay. A form photographed a few degrees
    off level is levelled first (and back after). Returns the images unchanged (the same
    objects) when there are none."""
    height, width = strong.shape
    thick = line_thickness(height, width)
    summed = cv2.reduce(strong, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = _bands(summed, width, thick)
    if rows:  # level, or turned by so little that most of it lies in a few rows
        without = _without_level_lines(strong, weak, rows, width, thick, 0)
        if without[0] is not strong:
            return without
    slope = line_slope(strong)
    if slope is None:
        return _without_short_line(strong, weak, summed, thick)
    level = Levelled(strong.shape, slope)
    flat_strong, flat_weak = level.apply(strong), level.apply(weak)
    flat_summed = cv2.reduce(flat_strong, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = _bands(flat_summed, width, thick, LEVELLED_JAG)
    without = _without_level_lines(flat_strong, flat_weak, rows, width, thick, LEVELLED_JAG)
    if without[0] is flat_strong:
        return _without_short_line(strong, weak, summed, thick)
    return level.undo(without[0]), level.undo(without[1])


def _without_short_line(
    strong: np.ndarray, weak: np.ndarray, summed: np.ndarray, thick: int
) -> tuple[np.ndarray, np.ndarray]:
    """The line the digit is written on, looked for across the columns of the strong ink
    (and the line's faint edges) instead of the image: a short field's line ("Age: ____")
    or an underline spans less of a photo than a form's line, but is the widest thing in
    the ink. A digit cropped to its ink meets these tests anyway; the line's thickness is
    still judged by the whole image's scale. ``summed``: the image's row sums, which are
    those columns' too."""
    inked = np.flatnonzero(summed)
    _, fullest, _, (row, _) = cv2.minMaxLoc(summed)  # a 1-D array is one row to OpenCV
    if not fullest or 2 * row < inked[0] + inked[-1]:
        return strong, weak  # the fullest row in the upper half: a 7's bar, not a line under it
    width = strong.shape[1]
    columns = np.flatnonzero(cv2.reduce(strong, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel())
    left = max(int(columns[0]) - RULE_EDGE - 1, 0)
    right = min(int(columns[-1]) + RULE_EDGE + 2, width)
    if right - left == width or fullest < RULE_SPAN * 255 * (right - left):
        return strong, weak  # looked at already, or no row spans the ink
    rows = _bands(summed, right - left, thick)
    box_strong = np.ascontiguousarray(strong[:, left:right])
    if len(rows) != 1 or not _is_written_on(box_strong, *rows[0], right - left):
        return strong, weak
    cut_strong, cut_weak = _cut(box_strong, weak[:, left:right], rows, [])
    strong, weak = strong.copy(), weak.copy()
    strong[:, left:right], weak[:, left:right] = cut_strong, cut_weak
    return strong, weak


def _without_level_lines(
    strong: np.ndarray, weak: np.ndarray, rows: Bands, width: int, thick: int, jag: int
) -> tuple[np.ndarray, np.ndarray]:
    """``without_joined_lines`` on an image whose lines lie level: ``rows`` are the full
    bands of rows, ``width`` the image's width before any levelling, and ``jag`` the rows
    (or columns) a levelled line strays either side of its band."""
    if len(rows) == 1 and _is_written_on(strong, *rows[0], width):
        return _cut(strong, weak, rows, [])
    if len(rows) == 2:
        return _without_box(strong, weak, rows, thick, jag)
    return strong, weak


def _cut(
    strong: np.ndarray, weak: np.ndarray, rows: Bands, columns: Bands
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``strong`` and ``weak`` without the bands, but where ink lies just beyond a
    band (the pen touches or crosses it there), and without their faint edges."""
    rest = cv2.subtract(strong, _band_mask(strong.shape, rows, columns))
    height, width = strong.shape
    strong, weak = strong.copy(), weak.copy()
    for start, stop in rows:
        crossed = (rest[max(start - 1, 0)] > 0) | (rest[min(stop, height - 1)] > 0)
        cut = np.where(crossed, np.uint8(255), np.uint8(0))
        strong[start:stop] &= cut
        weak[max(start - RULE_EDGE, 0) : stop + RULE_EDGE] &= cut
    for start, stop in columns:
        crossed = (rest[:, max(start - 1, 0)] > 0) | (rest[:, min(stop, width - 1)] > 0)
        cut = np.where(crossed, np.uint8(255), np.uint8(0))[:, np.newaxis]
        strong[:, start:stop] &= cut
        weak[:, max(start - RULE_EDGE, 0) : stop + RULE_EDGE] &= cut
    return strong, weak


def _is_written_on(strong: np.ndarray, top: int, bottom: int, width: int) -> bool:
    """Whether the ink off rows ``top:bottom`` lies above them (but a foot through them),
    well inside their run on both sides (by a share of ``width``), less high than the run
    is long and far higher than the run is thick."""
    above, below = strong[:top], strong[bottom:]
    if not above.any():
        return False
    high = top - cv2.boundingRect(above)[1]
    _, below_top, _, below_height = cv2.boundingRect(below)
    if below_height and below_top + below_height > RULE_FOOT * high:
        return False  # a 4's bar has its stem below it; a line, the digit's foot at most
    rest = np.concatenate([above, below])
    left, _, rest_width, rest_height = cv2.boundingRect(rest)
    line_left, _, line_width, _ = cv2.boundingRect(strong[top:bottom])
    margin = RULE_MARGIN * width
    return (
        line_width >= RULE_LENGTH * rest_height
        and bottom - top <= RULE_THIN * rest_height
        and left >= line_left + margin
        and left + rest_width <= line_left + line_width - margin
    )


def _without_box(
    strong: np.ndarray, weak: np.ndarray, rows: Bands, thick: int, jag: int
) -> tuple[np.ndarray, np.ndarray]:
    """Less the box round the digit: the two bands of ``rows`` its top and bottom, two such
    bands of columns between them its sides, all the other ink inside (give or take a foot
    through a side)."""
    box = strong[rows[0][0] : rows[1][1]]  # the sides run from the top to the bottom
    summed = cv2.reduce(box, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    columns = _bands(summed, len(box), thick, jag)
    if len(columns) != 2:
        return strong, weak
    inside = cv2.subtract(strong, _band_mask(strong.shape, rows, columns))
    if not _is_boxed(inside, rows, columns):
        return strong, weak
    return _cut(strong, weak, rows, columns)


def _band_mask(shape: tuple[int, ...], rows: Bands, columns: Bands) -> np.ndarray:
    """255 on the bands of rows and of columns, 0 elsewhere."""
    mask = np.zeros(shape, np.uint8)
    for start, stop in rows:
        mask[start:stop] = 255
    for start, stop in columns:
        mask[:, start:stop] = 255
    return mask


def _bands(full: np.ndarray, across: int, thick: int, jag: int = 0) -> Bands:
    """The bands of rows (or columns) whose ink (``full``: 255 a pixel) spans ``RULE_SPAN``
    of the ``across`` pixels, each with its blurred edges and ``jag`` more either side;
    none if one of them is thicker than ``thick``, as no printed line is."""
    lines = np.flatnonzero(full >= RULE_SPAN * 255 * across)
    if lines.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(lines) > 1)
    starts = np.concatenate([lines[:1], lines[breaks + 1]])
    stops = np.concatenate([lines[breaks], lines[-1:]]) + 1
    edge = RULE_EDGE_SPAN * 255 * across
    bands = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        for _ in range(RULE_EDGE):
            start -= int(start > 0 and full[start - 1] >= edge)
            stop += int(stop < len(full) and full[stop] >= edge)
        if stop - start > thick:
            return []
        bands.append((max(start - jag, 0), min(stop + jag, len(full))))
    return bands


def _is_boxed(rest: np.ndarray, rows: Bands, columns: Bands) -> bool:
    """Whether ``rest``, the ink off the box's sides, is a digit inside it: reaching past a
    side by at most a foot's reach, narrower than the box (an envelope's flap runs from side
    to side) and far larger than the sides are thick."""
    left, top, width, height = cv2.boundingRect(rest)
    if not width or not height:
        return False
    (_, inner_top), (inner_bottom, _) = rows
    (_, inner_left), (inner_right, _) = columns
    thickest = max(stop - start for start, stop in rows + columns)
    over = RULE_FOOT * min(width, height)
    return (
        thickest <= RULE_THIN * height
        and width <= BOX_INSIDE * (inner_right - inner_left)
        and top >= inner_top - over
        and top + height <= inner_bottom + over
        and left >= inner_left - over
        and left + width <= inner_right + over
    )
