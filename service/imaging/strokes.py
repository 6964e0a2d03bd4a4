"""The digit's strokes kept, everything else dropped: specks, stray shading, dark things cut
by the frame (edges.py: a finger, the table, a turned sheet's corners), a form's printed
lines apart from the digit and a circle drawn round it (forms.py), a screenshot's buttons
(panels.py), those it touches
(joined.py: the line it is written on, a box) and a page's lines (lines.py: a notebook's,
a grid).

The image is 8-bit with the ink bright (ink up) and reaches these functions with its
stretch table, which says how inked each level is; faint pixels are kept only where they
touch certain ink.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.errors import NoInk
from service.imaging.edges import edge_objects
from service.imaging.forms import without_form_lines
from service.imaging.grain import close_gaps, with_grains
from service.imaging.joined import without_joined_lines
from service.imaging.lines import without_printed_lines
from service.imaging.panels import without_panels

STRONG = 0.5  # "certainly ink": half the ink level above the floor
WEAK = 0.04  # faint anti-aliased edges are kept when they touch certain ink
SPECK_FRACTION = 0.08  # ink components smaller than this share of the largest are specks
_MAX_LOOKUPS = 8  # kept components looked up one by one; more go through a label table
_SOLE_COMPONENT = np.ones(1, dtype=np.intp)


def at_least(pixels: np.ndarray, lowest: int) -> np.ndarray:
    """255 where ``pixels >= lowest``, else 0 (OpenCV compares ``>``, without the GIL)."""
    return cv2.threshold(pixels, lowest - 1, 255, cv2.THRESH_BINARY)[1]


def keep_strokes(ink: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop specks and stray shading: keep faint pixels only where they touch real strokes.

    Returns the 8-bit ink-up pixels with everything else set to 0 (and ``lut[0]`` is 0), and
    how many separate pieces of faint ink they are: counted here anyway (again only once
    grains are closed into strokes), and many pieces is what a digit printed in dots looks
    like (dots.py).
    """
    strong_from = int(lut.searchsorted(STRONG, side="left"))  # lut never decreases
    if strong_from > 255 or cv2.minMaxLoc(ink)[1] < strong_from:
        raise NoInk("no ink found: nothing stands out from the background")
    # Strong ink (lut >= STRONG) is also weak ink (lut > WEAK): each stroke lies inside
    # exactly one weak component.
    strong, weak = without_joined_lines(
        at_least(ink, strong_from), at_least(ink, int(lut.searchsorted(WEAK, side="right")))
    )
    weak = without_printed_lines(weak, strong)
    weak_count, weak_labels = cv2.connectedComponents(weak, connectivity=8, ltype=cv2.CV_32S)
    if weak_count == 2:  # one weak component, so it holds every stroke: the common case
        return cv2.bitwise_and(ink, weak), 1
    _, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8, ltype=cv2.CV_32S)
    kept, gaps = _strokes(strong, labels, stats, ink, lut)
    touching = _weak_components_of(kept, labels, stats, weak_labels, weak_count)
    if len(touching) == weak_count - 1:
        strokes = cv2.bitwise_and(ink, weak)
    elif len(touching) <= _MAX_LOOKUPS:
        mask = np.zeros_like(weak)
        for component in touching:
            mask |= cv2.compare(weak_labels, component, cv2.CMP_EQ)  # type: ignore[call-overload]
        strokes = cv2.bitwise_and(ink, mask)
    else:
        table = np.zeros(weak_count, dtype=bool)
        table[list(touching)] = True
        strokes = np.where(table[weak_labels], ink, np.uint8(0))
    if not gaps:
        return strokes, len(touching)
    strokes = close_gaps(strokes, gaps)  # grains closed into strokes: count those pieces
    return strokes, cv2.connectedComponents(at_least(strokes, 1), connectivity=8)[0] - 1


def _strokes(
    strong: np.ndarray, labels: np.ndarray, stats: np.ndarray, ink: np.ndarray, lut: np.ndarray
) -> tuple[np.ndarray, int]:
    """Labels of the strong components that are the digit: not specks, not dark things cut
    by the frame, not a form's printed lines; and the gaps to close between them, in pixels
    (0 unless they are the grains of chalk or crayon: grain.py)."""
    if len(stats) == 2:  # a single component: nothing to compare it with
        return _SOLE_COMPONENT, 0
    areas = stats[1:, cv2.CC_STAT_AREA].copy()
    areas[edge_objects(strong, labels, stats, SPECK_FRACTION)] = 0
    specks = areas < SPECK_FRACTION * areas.max()
    kept = np.flatnonzero(~specks) + 1
    if len(kept) > 1:
        kept = without_panels(without_form_lines(kept, labels, stats), labels, stats, ink, lut)
    if not specks.any():
        return kept, 0
    return with_grains(kept, labels, stats, specks & (areas > 0))


def _weak_components_of(
    kept: np.ndarray,
    labels: np.ndarray,
    stats: np.ndarray,
    weak_labels: np.ndarray,
    weak_count: int,
) -> set[int]:
    if len(kept) > _MAX_LOOKUPS:
        table = np.zeros(len(stats), dtype=bool)
        table[kept] = True
        found = np.zeros(weak_count, dtype=bool)
        found[weak_labels[table[labels]]] = True
        # Python ints: OpenCV 5's bindings refuse numpy integer scalars (cv2.compare below).
        return set((np.flatnonzero(found[1:]) + 1).tolist())
    touching: set[int] = set()
    for component in kept.tolist():
        # Its bounding box's top row holds at least one of its pixels: any one names its
        # weak component.
        left, top, width = (int(v) for v in stats[component, :3])
        row = labels[top, left : left + width]
        column = left + int(np.argmax(row == component))
        touching.add(int(weak_labels[top, column]))
    return touching
