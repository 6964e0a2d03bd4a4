"""A form's printed lines among the separate pieces of strong ink: a box drawn round the
digit, a comb field's cell, a rule under it, two lines facing each other across it, and a
circle drawn round it. Each is told from a digit's own strokes by where it lies against all
the other ink and by how straight it is; strokes.py drops the pieces named here. Lines
joined to the digit are joined.py's.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from service.imaging.levelling import Levelled
from service.imaging.lines import TILT_MAX, line_slope, line_thickness

RULE_ASPECT = 4.0  # a separate line this many times wider than high, below the digit,...
RULE_THICKNESS = 0.25  # ...at most this share of the digit's height,...
RULE_FILL = 0.5  # ...and straight (filling this share of its bounding box) is a form's rule
RULE_SLANT = math.tan(math.radians(TILT_MAX))  # ...less the rise across it of a form turned
OUTLINE_BAND = 0.12  # of a frame's shorter side: how close to its box edges its ink lies...
OUTLINE_SHARE = 0.85  # ...for this share of its pixels
OUTLINE_FILL = 0.3  # a frame covers at most this share of its bounding box
RULED_RUN = 0.5  # of a comb field's box: its baseline and ticks run straight this far...
RULED_SLACK = 2  # ...give or take this many pixels either side (a form photographed turned)
RING_CONTENT = 0.4  # what a ring drawn round the digit encloses spans this share of its height
FACING_SLACK = 0.15  # of their length: how far the ends of two lines facing across it may differ
STRAIGHT_SPREAD = 1.5  # a straight line spreads about its axis at most this times its thickness...
STRAIGHT_MARGIN = 1.0  # ...plus this many pixels (a curve spreads by its bulge)


def without_form_lines(kept: np.ndarray, labels: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """``kept`` less the printed lines of a form: a box drawn around the digit (a thin,
    rectangular outline enclosing all the other ink), a comb field's cell (straight lines
    holding it from below and both sides), a rule under it (a long flat line below all
    the other ink) and two straight lines facing each other across it (a box whose other
    sides came out faint, a table's lines). A digit's own parts are never those, so they
    stay; and when nothing else would remain, nothing is dropped. Each component is compared
    with all the others at once, through the others' extremes: a page of specks holds
    thousands of them.
    """
    boxes = stats[kept]
    left, top = boxes[:, cv2.CC_STAT_LEFT], boxes[:, cv2.CC_STAT_TOP]
    right = left + boxes[:, cv2.CC_STAT_WIDTH]
    bottom = top + boxes[:, cv2.CC_STAT_HEIGHT]
    ink_top, ink_bottom = _others_min(top), -_others_min(-bottom)
    # Reaching past the rest on both sides, and holding it from below: a box round the
    # digit, or a comb field's cell (a baseline and a tick either side); enclosing it: a
    # box or a ring.
    wider = (left < _others_min(left)) & (-right < _others_min(-right))
    cups = wider & (bottom > ink_bottom)
    encloses = cups & (top < ink_top)
    drop = _are_rules(boxes, ink_top, ink_bottom, wider) | _facing_lines(labels, kept, boxes)
    for i in np.flatnonzero(cups & ~drop).tolist():  # at most one holds all the others
        component = int(kept[i])
        inside = int(ink_bottom[i] - ink_top[i])
        if encloses[i]:
            drop[i] = _is_outline(labels, stats[component], component) or _is_ring_round(
                labels, stats[component], component, inside
            )
        else:
            drop[i] = _is_ruled(labels, stats[component], component)
    return kept if drop.all() else kept[~drop]


def _others_min(values: np.ndarray) -> np.ndarray:
    """For each entry, the smallest of all the other entries (there are at least two)."""
    lowest = int(np.argmin(values))
    smallest, second = np.partition(values, 1)[:2]
    others = np.full(len(values), smallest)
    others[lowest] = second
    return others


def _are_rules(
    boxes: np.ndarray, ink_top: np.ndarray, ink_bottom: np.ndarray, wider: np.ndarray
) -> np.ndarray:
    """Which components are a straight line under the rest of the ink, thin beside the
    digit's height: a form's rule, level or photographed a few degrees turned. (A 5's or a
    2's separate bottom stroke is curved or thick.) A line reaching past the rest on both
    sides (``wider``) is judged by its own thickness, not its box's height: turned, a long
    line's box is as high as it rises across the image. A 5's flat foot is never wider."""
    top, width = boxes[:, cv2.CC_STAT_TOP], boxes[:, cv2.CC_STAT_WIDTH]
    height, area = boxes[:, cv2.CC_STAT_HEIGHT], boxes[:, cv2.CC_STAT_AREA]
    thickest = RULE_THICKNESS * (ink_bottom - ink_top)
    return (
        (top >= ink_bottom)
        & (width >= RULE_ASPECT * height)
        & ((height <= thickest) | (wider & (area <= thickest * width)))
        & (area >= RULE_FILL * width * (height - RULE_SLANT * width))
    )


def _facing_lines(labels: np.ndarray, kept: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which components are two straight lines facing each other across all the other ink
    (above and below it, or either side), each reaching past it at both ends, their ends
    level with each other's: a box whose other two sides came out faint (a hand's motion
    smears the lines across it thin) or a table's two lines. They are at least as long as
    the rest is high: a capital I's separate bars are not."""
    facing = np.zeros(len(kept), dtype=bool)
    if len(kept) < 3:
        return facing
    x0, y0 = boxes[:, cv2.CC_STAT_LEFT], boxes[:, cv2.CC_STAT_TOP]
    x1, y1 = x0 + boxes[:, cv2.CC_STAT_WIDTH], y0 + boxes[:, cv2.CC_STAT_HEIGHT]
    for near, far, start, end, upright in ((y0, y1, x0, x1, False), (x0, x1, y0, y1, True)):
        before = np.flatnonzero(far <= _others_min(near))  # at most one lies before all others
        after = np.flatnonzero(-near <= _others_min(-far))
        if not before.size or not after.size:
            continue
        pair = [int(before[0]), int(after[0])]
        rest = np.ones(len(kept), dtype=bool)
        rest[pair] = False
        height = int(y1[rest].max() - y0[rest].min())
        length = int(max(end[pair] - start[pair]))
        if (
            length >= height
            and all(start[pair] < start[rest].min())
            and all(end[pair] > end[rest].max())
            and abs(int(start[pair[0]] - start[pair[1]])) <= FACING_SLACK * length
            and abs(int(end[pair[0]] - end[pair[1]])) <= FACING_SLACK * length
            and all(
                _is_straight(labels, boxes[i], int(kept[i]), RULE_THICKNESS * height, upright)
                for i in pair
            )
        ):
            facing[pair] = True
    return facing


def _is_straight(
    labels: np.ndarray, box: np.ndarray, component: int, thickest: float, upright: bool
) -> bool:
    """Whether the component is a straight line at most ``thickest`` thick, level (or upright)
    within ``TILT_MAX``: its pixels spread about their long axis no more than a line's
    thickness does (the second moments of a bar of thickness t give t squared over 12)."""
    left, top, width, height, area = (int(v) for v in box[:5])
    mine = np.equal(labels[top : top + height, left : left + width], component).view(np.uint8)
    moments = cv2.moments(mine, binaryImage=True)
    mu20, mu02, mu11 = moments["mu20"] / area, moments["mu02"] / area, moments["mu11"] / area
    mean, half_gap = (mu20 + mu02) / 2, math.hypot((mu20 - mu02) / 2, mu11)
    length, spread = math.sqrt(12 * (mean + half_gap)), math.sqrt(12 * max(mean - half_gap, 0.0))
    thickness = area / max(length, 1.0)
    angle = math.degrees(math.atan2(2 * mu11, mu20 - mu02)) / 2  # of the long axis, from level
    tilt = 90 - abs(angle) if upright else abs(angle)
    return (
        thickness <= thickest
        and length >= RULE_ASPECT * spread
        and spread <= STRAIGHT_SPREAD * thickness + STRAIGHT_MARGIN
        and tilt <= TILT_MAX
    )


def _is_outline(labels: np.ndarray, box: np.ndarray, component: int) -> bool:
    """Whether nearly all of the component lies along its bounding box's edges (a frame), not
    across it (a 0 touches its box at four points only)."""
    left, top, width, height, area = (int(v) for v in box[:5])
    band = _frame_band(width, height)
    if not band or area > OUTLINE_FILL * width * height:
        return False
    inner = labels[top + band : top + height - band, left + band : left + width - band]
    return int(np.count_nonzero(inner == component)) <= (1 - OUTLINE_SHARE) * area


def _is_ruled(labels: np.ndarray, box: np.ndarray, component: int) -> bool:
    """Whether the component is thin and nearly all straight lines across or up its box: a
    comb field's baseline and its ticks, printed. The baseline runs on into the next cells,
    past the ticks, so the ticks need not lie along the box's sides. Handwriting is not
    that straight."""
    left, top, width, height, area = (int(v) for v in box[:5])
    if area > OUTLINE_FILL * width * height:
        return False
    mine = np.equal(labels[top : top + height, left : left + width], component).view(np.uint8)
    slope = line_slope(mine, line_thickness(*labels.shape))
    if slope is not None:  # a form photographed turned: its baseline levelled, ticks upright
        mine = Levelled(mine.shape, slope).apply(mine)
    # Widened first, so that a line photographed a degree or two off still runs straight.
    wide = cv2.dilate(mine, np.ones((2 * RULED_SLACK + 1,) * 2, np.uint8))
    across = np.ones((1, max(2, round(RULED_RUN * width))), np.uint8)
    up = np.ones((max(2, round(RULED_RUN * height)), 1), np.uint8)
    lines = cv2.bitwise_or(
        cv2.morphologyEx(wide, cv2.MORPH_OPEN, across), cv2.morphologyEx(wide, cv2.MORPH_OPEN, up)
    )
    return cv2.countNonZero(cv2.bitwise_and(lines, mine)) >= OUTLINE_SHARE * area


def _is_ring_round(labels: np.ndarray, box: np.ndarray, component: int, inside: int) -> bool:
    """Whether the component is a closed curve drawn round the rest, as a teacher circles an
    answer: nearly all of it lies along the outline of the shape it closes, which a box's
    edges do not describe. What it encloses must be as tall as a digit in it (``inside``
    rows): a dotted zero's dot is not, and its 0 stays."""
    left, top, width, height, area = (int(v) for v in box[:5])
    band = _frame_band(width, height)
    if not band or inside < RING_CONTENT * height:
        return False
    mine = np.equal(labels[top : top + height, left : left + width], component).view(np.uint8)
    contours, _ = cv2.findContours(mine, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    closed = np.zeros_like(mine)
    cv2.drawContours(closed, contours, -1, 1, thickness=cv2.FILLED)
    if area > OUTLINE_FILL * cv2.countNonZero(closed):
        return False  # an open curve closes nothing: it is its own outline
    inner = cv2.erode(closed, np.ones((2 * band + 1, 2 * band + 1), np.uint8))
    return cv2.countNonZero(cv2.bitwise_and(mine, inner)) <= (1 - OUTLINE_SHARE) * area


def _frame_band(width: int, height: int) -> int:
    """How close to its outline a frame's ink lies, in pixels; 0 when its box is too small
    to leave anything inside such a band on each side."""
    band = max(2, round(OUTLINE_BAND * min(width, height)))
    return band if width > 2 * band and height > 2 * band else 0
