"""A page's printed lines taken out of the ink: a notebook's rules, its margin, a grid, and
a form's line or box that the digit touches. They run straight across the image, further
than any stroke, and they touch the digit, so they would be kept with its strokes and
stretch its box across the page. The pixels where the pen crosses them stay. A form
photographed a few degrees turned is levelled (levelling.py) before its lines are looked for.

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
RULE_EDGE_SPAN = 0.3  # rows next to one this full of the pen's ink are its blurred edges
RULE_EDGE = 2  # rows of faint edge either side of such a line, dropped with it
RULE_MARGIN = 0.05  # a line written on runs this far (of the width) past the rest each side,...
RULE_LENGTH = 1.0  # ...is this many times as long as the rest is high (a 1's foot is not),...
RULE_THIN = 0.1  # ...at most this thick beside the rest's height (a 4's bar in 8x8 is not)
RULE_FOOT = 0.35  # of the ink's height above a line or box, how far past it a foot may reach
BOX_INSIDE = 0.9  # of a box's inner width: what the digit in it spans at most
TILT_MAX = 5.0  # degrees: a form photographed this far off level is levelled to find its lines
TILT_STEP = 0.25  # degrees between the slants a line is looked for at
LEVELLED_JAG = 1  # rows a levelled line strays from its band (pixels move by whole rows)

Bands = list[tuple[int, int]]  # (start, stop) of each band of rows or columns


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


def without_joined_lines(strong: np.ndarray, weak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``strong`` and ``weak`` less a form's printed lines as dark as the pen that the digit
    touches or crosses, so one piece with it, which strokes.py's tests of whole pieces never
    see: the line it is written on, or the box round it. Both are found as thin bands of
    rows of ink across most of the image; the pixels where the pen touches or crosses them
    stay. A form photographed a few degrees off level is levelled first (and back after).
    Returns the images unchanged (the same objects) when there are none."""
    height, width = strong.shape
    thick = line_thickness(height, width)
    rows = _bands(cv2.reduce(strong, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel(), width, thick)
    if rows:  # level, or turned by so little that most of it lies in a few rows
        without = _without_level_lines(strong, weak, rows, width, thick, 0)
        if without[0] is not strong:
            return without
    slope = line_slope(strong)
    if slope is None:
        return strong, weak
    level = Levelled(strong.shape, slope)
    flat_strong, flat_weak = level.apply(strong), level.apply(weak)
    summed = cv2.reduce(flat_strong, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = _bands(summed, width, thick, LEVELLED_JAG)
    without = _without_level_lines(flat_strong, flat_weak, rows, width, thick, LEVELLED_JAG)
    if without[0] is flat_strong:
        return strong, weak
    return level.undo(without[0]), level.undo(without[1])


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
