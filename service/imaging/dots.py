"""A digit printed in dots (a dot-matrix printer, a date code, an LED sign) is read from its grid.

Each dot is a separate piece of ink. Fitted into MNIST's box as it is, a dotted digit is a
pattern the model never saw, and more than five pieces are refused outright (shape.py). When
every piece of ink is a dot of one size on one evenly spaced grid, the digit is that grid's
small bitmap, one pixel per dot: the fit gets that instead, and a small bitmap reads as a
pixel font does (docs/performance.md, "Digits printed in dots").

Dots scattered anywhere (a ring of dots, confetti, a die's face) are not on such a grid, or
too few, and stay as they are.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.strokes import at_least

MIN_DOTS = 8  # a 5x7 digit has 10 or more (the HD44780's 1); fewer are judged as they are
MAX_DIGIT_PIECES = 4  # a digit is in at most four pieces (shape.py): more are looked at here
MIN_ROWS = 5  # dot-matrix characters are 5 to 16 dots high...
MAX_SIDE = 16  # ...and at most 16 wide
MAX_DOTS = MAX_SIDE * MAX_SIDE  # more pieces than that are no grid of dots: not looked at
SIZE_SPREAD = 2.5  # every dot's area lies within this factor of the median dot's
MAX_ELONGATION = 2.0  # a dot's box is at most this many times longer than wide
MAX_PITCH = 3.0  # dots at most this many diameters apart: further, they are not one glyph
ON_THE_GRID = 0.3  # of the pitch: how far a dot's centre may lie from its grid line
MAX_TURN = 6  # degrees; the grid is looked for square to the frame first, then turned
TURNS = sorted(np.arange(-MAX_TURN, MAX_TURN + 0.25, 0.5), key=abs)
PAPER_CELLS = 2  # cells of paper round the bitmap, as round a small image


def as_dot_grid(kept: np.ndarray, ink_from: int) -> np.ndarray:
    """The bitmap of a digit printed in dots, each dot one pixel at the ink's peak level with
    paper round it; ``kept`` itself when its ink (levels from ``ink_from``) is anything else."""
    count, _, stats, centres = cv2.connectedComponentsWithStats(
        at_least(kept, ink_from), connectivity=8, ltype=cv2.CV_32S
    )
    if not MIN_DOTS <= count - 1 <= MAX_DOTS or not _same_round_dots(stats[1:]):
        return kept
    diameter = float(np.median(stats[1:, cv2.CC_STAT_WIDTH : cv2.CC_STAT_HEIGHT + 1]))
    on_grid = _on_a_grid(centres[1:], diameter)
    if on_grid is None:
        return kept
    rows, columns = on_grid
    height, width = int(rows.max()) + 1, int(columns.max()) + 1
    if not MIN_ROWS <= height <= MAX_SIDE or width > MAX_SIDE:
        return kept
    if len(set(zip(rows.tolist(), columns.tolist(), strict=True))) < count - 1:
        return kept  # two dots on one grid point: not a grid
    grid = np.zeros((height + 2 * PAPER_CELLS, width + 2 * PAPER_CELLS), dtype=np.uint8)
    grid[rows + PAPER_CELLS, columns + PAPER_CELLS] = cv2.minMaxLoc(kept)[1]
    return grid


def _same_round_dots(stats: np.ndarray) -> bool:
    """Pieces of ink all of about one area, none of them a dash."""
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    typical = float(np.median(areas))
    if areas.min() * SIZE_SPREAD < typical or areas.max() > SIZE_SPREAD * typical:
        return False
    width = stats[:, cv2.CC_STAT_WIDTH]
    height = stats[:, cv2.CC_STAT_HEIGHT]
    return bool((np.maximum(width, height) <= MAX_ELONGATION * np.minimum(width, height)).all())


def _on_a_grid(centres: np.ndarray, diameter: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Each dot's row and column on a grid turned by at most MAX_TURN degrees (a photographed
    label is rarely square to the frame), or None when no such grid holds every dot."""
    for degrees in TURNS:
        turn = np.radians(degrees)
        x, y = centres[:, 0], centres[:, 1]
        columns = _grid_lines(x * np.cos(turn) + y * np.sin(turn), diameter)
        rows = _grid_lines(y * np.cos(turn) - x * np.sin(turn), diameter)
        if columns is not None and rows is not None:
            return rows, columns
    return None


def _grid_lines(positions: np.ndarray, diameter: float) -> np.ndarray | None:
    """Each dot's grid line along one axis (0 for the first), or None when the positions are
    not on evenly spaced lines at most MAX_PITCH diameters apart. The lines are the groups
    of positions closer than half a dot; their spacing is fitted to all of them, as the gap
    between two neighbouring groups is shortened by each dot's wobble."""
    order = np.sort(positions)
    breaks = np.flatnonzero(np.diff(order) > diameter / 2) + 1
    if len(breaks) >= MAX_SIDE:  # more lines than a glyph has: nothing more to look at
        return None
    groups = np.split(order, breaks)
    if len(groups) == 1:
        return np.zeros(len(positions), dtype=np.intp)  # all on one line: a column of dots
    lines = np.array([group.mean() for group in groups])
    step = float(np.diff(lines).min())
    if step > MAX_PITCH * diameter:
        return None
    pitch, first = np.polyfit(np.rint((lines - lines[0]) / step), lines, 1)
    if pitch <= 0:
        return None
    on = (positions - first) / pitch
    nearest = np.rint(on)
    if np.abs(on - nearest).max() > ON_THE_GRID:
        return None
    return (nearest - nearest.min()).astype(np.intp)
