"""A page's printed lines taken out of the ink: a notebook's rules, its margin, a grid, and
the line a form's digit is written on. They run straight across the image, further than
any stroke, and they touch the digit, so they would be kept with its strokes and stretch
its box across the page. Both kinds keep the pixels where the pen crosses them.

Images are 8-bit, 255 for ink, at the work image's size.
"""

from __future__ import annotations

import cv2
import numpy as np

LINE_REACH = 1.25  # faint ink this many times the strong ink's box (+2) may hold a page's lines
LINE_LENGTH = 0.6  # of the image's side: a straight run of ink this long across it is printed...
LINE_THICKNESS = 0.025  # ...if it is at most this thin (of the shorter side, 2 pixels at least)
RULE_SPAN = 0.75  # of the image's width: rows this full of the pen's ink are a printed line...
RULE_MARGIN = 0.05  # ...if it runs this far (of the width) past the rest of the ink each side...
RULE_LENGTH = 1.0  # ...and is this many times as long as the rest is high (a 1's foot is not)
RULE_THIN = 0.1  # ...and at most this thick beside the rest's height (a 4's bar in 8x8 is not)
RULE_FOOT = 0.35  # of the ink's height above such a line, how far below it a foot may reach
RULE_EDGE_SPAN = 0.3  # rows next to it this full of the pen's ink are its blurred edges
RULE_EDGE = 2  # rows of faint edge either side of such a line, dropped with it


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


def without_written_on_rule(strong: np.ndarray, weak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``strong`` and ``weak`` less a form's line the digit is written on, printed as dark as
    the pen: rows of ink across nearly the whole image, thin, with most of the other ink
    above them, running well past it on both sides. A stroke of the digit ends where the
    digit does; the pixels where the pen touches or crosses the line stay. Returns the
    images unchanged (the same objects) when there is no such line."""
    height, width = strong.shape
    full = cv2.reduce(strong, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = np.flatnonzero(full >= RULE_SPAN * 255 * width)
    if rows.size == 0:
        return strong, weak
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    edge = RULE_EDGE_SPAN * 255 * width  # the line's blurred edge rows go with it
    for _ in range(RULE_EDGE):
        top -= int(top > 0 and full[top - 1] >= edge)
        bottom += int(bottom < height and full[bottom] >= edge)
    if bottom - top > line_thickness(height, width) or not _is_written_on(strong, top, bottom):
        return strong, weak
    # The pen crosses or touches the line where ink lies just beyond it.
    crossed = (strong[max(top - 1, 0)] > 0) | (strong[min(bottom, height - 1)] > 0)
    cut = np.where(crossed, np.uint8(255), np.uint8(0))
    edge_top, edge_bottom = max(top - RULE_EDGE, 0), min(bottom + RULE_EDGE, height)
    strong, weak = strong.copy(), weak.copy()
    strong[top:bottom] &= cut
    weak[edge_top:edge_bottom] &= cut
    return strong, weak


def _is_written_on(strong: np.ndarray, top: int, bottom: int) -> bool:
    """Whether the ink off rows ``top:bottom`` lies above them (but a foot through them),
    well inside their run on both sides, less high than the run is long and far higher
    than the run is thick."""
    width = strong.shape[1]
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
