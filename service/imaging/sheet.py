"""A sheet on a surround of another shade: the sheet, not the surround, is the paper.

The normaliser takes an image's border for its paper. In a photo of a sheet on a desk, a scan
with the lid's dark margins or a photo of a screen inside its bezel, the border is the
surround instead: the sheet comes out as one huge bright "stroke" and the digit written on it
is lost (answered not_a_digit). When the bright side of such an image is one large, nearly
rectangular region with dark marks inside it, the image is cut to that region and measured
again, so that the sheet's own paper and ink are what the rest of the pipeline sees.

The same holds the other way round: a coloured sticky note or a form's shaded field on white
paper is darker than its surround but lighter than the pen, and came out as a faint square
round the digit. Such a sheet must lie wholly inside the image (a shadow or a thumb reaches its
edge) and hold the pen's marks. A dark plate with white paint on it (a house number, a sign on
a wall) is one too, its marks lighter than it; the frame may cut it straight on one or two
sides, or cut off its corners when it is photographed close and turned. On a dark surround (a
screen in dark mode) the same plate is lighter than the surround: a grey message bubble or key,
the writing on it lighter still.

Every sheet and plate is one flat shade apart from its marks. A bold stroke that fills much
of the image (a 1 cropped close, a white 0 filling the frame) is a large region too, with
lighter or darker pixels inside it, but its shade runs from its edges to its core. A
binarised one is flat, but a white 0 filling the frame meets three or four of its sides,
where a sheet on a dark surround leaves the surround showing on two at least.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.measurement import (
    MIN_CONTRAST,
    MIN_INK_PIXELS,
    Measurement,
    clean_border_table,
)

PAGE_MIN_SHARE = 0.3  # of the image's pixels: a sheet, not a stroke (a bold digit covers less)
PAGE_MIN_FILL = 0.85  # of its rotated bounding box: a sheet's outline is a quadrilateral
CORNER_TOLERANCE = 0.02  # of its hull's perimeter: how far an outline may bow from 4 corners
PAGE_INSET = 0.04  # of its shorter side, trimmed off its edges: the sheet's shaded rim
SHEET_SHADE = 0.1  # of the way from a light surround to the pen: darker is a sheet (or ink)
MARKS_CONTRAST = int(2 * MIN_CONTRAST)  # levels the pen's marks are darker than the sheet's shade
SHEET_MIN_FLAT = 0.7  # of a sheet's own pixels, the share within half that of its shade
SHADOWED_SHEET = 0.2  # of the way from a dark surround to the sheet: a shadowed sheet
SHEET_MIN_LIT = 0.4  # of a shadowed sheet, the least share of it lit
# Sides of the frame a bright sheet may meet: the dark surround round it shows on the others.
BRIGHT_SHEET_MAX_SIDES = 2


def find_sheet(work: np.ndarray, measured: Measurement) -> np.ndarray | None:
    """The sheet's part of the 8-bit work image, or None when the image is not a sheet on a
    surround of another shade. When the border is the dark side (``measured`` says bright
    ink), as it is for white ink on black too, a sheet is a bright region (for white ink
    on black it is the digit, and too small); when the border is light, a darker one."""
    # A busy surround's spread hides the sheet too: measured from the surround's level alone.
    lut = measured.lut if measured.lut is not None else clean_border_table(work, measured)
    if lut is None:
        return None
    if measured.inverted:
        return _shaded_sheet(work, cv2.bitwise_not(work), lut)
    sheet = _bright_sheet(work, lut)
    if sheet is None:  # a grey plate on a darker surround, its marks lighter or darker
        return _shaded_sheet(work, work, lut)
    return sheet


def _bright_sheet(work: np.ndarray, lut: np.ndarray) -> np.ndarray | None:
    """A sheet brighter than half the way from the dark surround to the brightest ink,
    with darker marks on it (or, where that is no quadrilateral, a sheet a shadow falls
    across): the sheet's part of ``work``, or None."""
    # Half way from the surround to the sheet, as the stretch table has it: 0 to 1.
    half = int(np.searchsorted(lut, 0.5))
    found = _largest_region(work, half)
    filled = None if found is None else _quadrilateral(found[0])
    if found is None or filled is None:
        return _shadowed_sheet(work, lut, half)
    paper, box, area = found
    if sum(_frame_contact(paper, box)) > BRIGHT_SHEET_MAX_SIDES:
        return None  # a bold white 0 round its dark hole, filling the frame: no surround
    if not _written_on(filled, area):
        return None
    ink = cv2.bitwise_not(work)  # the sheet dark, its marks bright, as _is_flat reads them
    if not _is_flat_at_its_shade(ink, paper):
        return None  # a bold white digit filling the frame: its strokes are no flat sheet
    return _cut_out(work, filled, paper, box)


def _shadowed_sheet(work: np.ndarray, lut: np.ndarray, half: int) -> np.ndarray | None:
    """A sheet a hard shadow falls across: its lit part (``half`` and up) no quadrilateral,
    the whole sheet one at a fifth of the way from the surround, inside the image but for a
    turned corner (a face lit from one side is one too, cut by the frame), its shadowed part
    flat at its own level."""
    found = _largest_region(work, int(np.searchsorted(lut, SHADOWED_SHEET)))
    if found is None:
        return None
    paper, box, area = found
    straight, partly = _frame_contact(paper, box)
    if straight or partly > 1:
        return None
    filled = _quadrilateral(paper)
    if filled is None or not _written_on(filled, area):
        return None
    lit = (work >= half) & paper
    shaded = paper & ~lit
    if np.count_nonzero(lit) < SHEET_MIN_LIT * area:
        return None
    ink = cv2.bitwise_not(work)  # as _is_flat reads it
    if not (_is_flat_at_its_shade(ink, lit) and _is_flat_at_its_shade(ink, shaded)):
        return None
    return _cut_out(work, filled, paper, box, extend=True)


def _shaded_sheet(work: np.ndarray, ink: np.ndarray, lut: np.ndarray) -> np.ndarray | None:
    """A sheet a shade away from the surround towards the pen, wholly inside the image, with
    the pen's marks on it, or a plate with marks the other way (paint), which the frame may
    cut straight on one or two sides or at its corners: the sheet's part of ``work``, or
    None. ``ink`` is ``work`` with the surround dark, as the stretch table reads it: for a
    light surround a darker sheet (a sticky note, a house number's dark plate), for a dark
    one a lighter plate (a grey chat bubble or key in dark mode, white writing on it). Dense
    strokes (a scribble, a Lissajous figure) also make a large region round stronger cores,
    but the surround shows between them."""
    level = int(np.searchsorted(lut, SHEET_SHADE))
    found = _largest_region(ink, level)
    if found is None:
        return None
    region, box, _ = found
    straight, partly = _frame_contact(region, box)
    if straight > 2:
        return None  # a shape cropped to its ink
    filled = _quadrilateral(region)
    if filled is None:
        return None  # round, also where it meets the frame (a thumb, a blob)
    # The sheet's shade inside its outline, with the islands light marks enclose (a 0's).
    _, shaded = cv2.threshold(ink, level - 1, 1, cv2.THRESH_BINARY)
    if cv2.countNonZero(shaded & filled) < PAGE_MIN_FILL * cv2.countNonZero(filled):
        return None  # the surround shows through: strokes
    if not _holds_marks(ink, region, filled, straight + partly):
        return None
    return _cut_out(work, filled, region, box)


def _holds_marks(
    ink: np.ndarray, region: np.ndarray, filled: np.ndarray, cut_by_frame: int
) -> bool:
    """Whether the sheet is one flat shade holding marks: a pen's, darker than its shade,
    when it lies wholly inside the image, or paint's, lighter, in the holes they leave. A
    region the frame cuts that holds a pen's marks is a shadow (or a thumb), whatever
    lighter gaps it has: the lit paper in a loop crossing its edge. A bold stroke filling
    much of a narrow image (a 1 cropped close) is no sheet: its shade runs from its edges to
    its core, and a blurred digit's broad strokes reaching the frame leave lighter gaps too."""
    shade = int(np.median(ink[region]))  # a blot, a grey square, has no marks either way
    if not _is_flat(ink, region, shade):
        return False
    if _marked(ink, shade + MARKS_CONTRAST, region):
        return not cut_by_frame
    holes = filled & ~region.view(np.uint8)
    return _marked(cv2.bitwise_not(ink), 255 - shade + MARKS_CONTRAST, holes)


def _is_flat(ink: np.ndarray, region: np.ndarray, shade: int) -> bool:
    """Whether the region away from its edges is one flat shade, apart from the pen's marks
    on it (darker by ``MARKS_CONTRAST``), as a sheet or a plate is."""
    inner = cv2.erode(region.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
    levels = ink[inner].astype(np.int16)
    own = levels[levels < shade + MARKS_CONTRAST]
    near = np.abs(own - shade) <= MARKS_CONTRAST // 2
    return np.count_nonzero(near) >= SHEET_MIN_FLAT * max(near.size, 1)


def _is_flat_at_its_shade(ink: np.ndarray, region: np.ndarray) -> bool:
    """``_is_flat`` at the region's own median shade."""
    return _is_flat(ink, region, int(np.median(ink[region])))


def _written_on(filled: np.ndarray, area: int) -> bool:
    """Whether a sheet's outline, filled in, holds marks: enough pixels its own shade
    (``area`` of them) leaves out."""
    return cv2.countNonZero(filled) - area >= MIN_INK_PIXELS


def _frame_contact(region: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int]:
    """How many sides of the frame cut the region straight, along all of its own side there
    (a plate cropped by the photo), and how many it meets along less: a turned plate's
    corners leaving the frame, or a round shape, which is no quadrilateral."""
    x, y, width, height = box
    rows, cols = region.shape
    sides = (
        (y == 0, region[0, x : x + width], width),
        (y + height >= rows, region[-1, x : x + width], width),
        (x == 0, region[y : y + height, 0], height),
        (x + width >= cols, region[y : y + height, -1], height),
    )
    straight = partly = 0
    for reaches, line, extent in sides:
        if reaches and np.count_nonzero(line) >= PAGE_MIN_FILL * extent:
            straight += 1
        elif reaches:
            partly += 1
    return straight, partly


def _marked(image: np.ndarray, level: int, where: np.ndarray) -> bool:
    """Whether ``where`` holds marks: enough pixels of ``image`` at ``level`` or more."""
    if level > 255:
        return False
    _, marks = cv2.threshold(image, level - 1, 1, cv2.THRESH_BINARY)
    return cv2.countNonZero(marks & where) >= MIN_INK_PIXELS


def _largest_region(
    image: np.ndarray, lowest: int
) -> tuple[np.ndarray, tuple[int, int, int, int], int] | None:
    """The largest 4-connected region of ``image`` at ``lowest`` or more, its box and its
    area, when it covers ``PAGE_MIN_SHARE`` of the image; else None. Most images have too
    few such pixels to hold one, and are told so before a labelling that costs ten times
    more."""
    _, mask = cv2.threshold(image, lowest - 1, 1, cv2.THRESH_BINARY)
    if cv2.countNonZero(mask) < PAGE_MIN_SHARE * image.size:
        return None
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # pixels exist: label 1 does
    x, y, width, height, area = (int(v) for v in stats[largest])
    if area < PAGE_MIN_SHARE * image.size:
        return None
    return np.equal(labels, largest), (x, y, width, height), area


def _quadrilateral(region: np.ndarray) -> np.ndarray | None:
    """The region with what it encloses filled in, when that is nearly all of the rectangle
    round it (a sheet's outline is a quadrilateral, turned or not) or of the four-cornered
    outline round it (a sheet photographed at a slant, a trapezoid); else None."""
    contours, _ = cv2.findContours(
        region.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    outline = max(contours, key=cv2.contourArea)
    filled = np.zeros(region.shape, np.uint8)
    cv2.drawContours(filled, [outline], 0, 1, thickness=cv2.FILLED)
    area = cv2.countNonZero(filled)
    _, (box_width, box_height), _ = cv2.minAreaRect(outline)
    if area >= PAGE_MIN_FILL * box_width * box_height:
        return filled
    hull = cv2.convexHull(outline)
    corners = cv2.approxPolyDP(hull, CORNER_TOLERANCE * cv2.arcLength(hull, True), True)
    if len(corners) == 4 and area >= PAGE_MIN_FILL * cv2.contourArea(corners):
        return filled
    return None


def _cut_out(
    work: np.ndarray,
    filled: np.ndarray,
    paper: np.ndarray,
    box: tuple[int, int, int, int],
    extend: bool = False,
) -> np.ndarray:
    """The sheet within its box, its shaded rim trimmed off and everything round it (the
    surround in the corners of a turned sheet) painted the sheet's own paper level, or,
    where a shadow falls across the sheet (``extend``), its nearest pixel's level: the
    shadow then reaches the frame, where hard_shadow.py looks for it."""
    x, y, width, height = box
    rim = max(1, round(PAGE_INSET * min(width, height)))
    inside = cv2.erode(filled, np.ones((2 * rim + 1, 2 * rim + 1), np.uint8))
    if extend:  # a shadow across the sheet reaches its edges: it goes on to the frame
        sheet = _nearest_inside(work, inside)
    else:
        level = int(np.median(work[paper]))
        sheet = np.where(inside.view(bool), work, np.uint8(level))
    return np.ascontiguousarray(sheet[y + rim : y + height - rim, x + rim : x + width - rim])


def _nearest_inside(work: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``work`` with every pixel outside ``inside`` (uint8 mask) given its nearest inside
    pixel's level."""
    outside = np.equal(inside, 0).view(np.uint8)
    _, nearest = cv2.distanceTransformWithLabels(
        outside, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    return work[inside.view(bool)][nearest - 1]  # inside pixels are labelled 1.. in order
