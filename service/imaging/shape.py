"""What the normalised ink looks like, as numbers: signals that something is not a digit.

Normalisation fits any ink into MNIST's 20x20 box, so it can make a digit-sized picture of
anything: a dash in a 10000x10 strip, a line of text, a filled-in page. The model then sees
something digit-sized. These signals are measured beside the pipeline, on the 28x28 image
the model gets (the pipeline's output is untouched), and say what the fit hid:

- aspect: the ink's box is far wider than tall (a dash, a word, a row of marks);
- pieces: the ink is in many separate pieces (text, dots, confetti);
- fill: the ink covers nearly all of its own box (a blot, a filled rectangle, a photo of a
  surface), unless the box is a bar: a 1 fills its box too;
- holes: the ink closes many loops around the paper (a flower, a tangle, a mesh); a digit
  closes at most two, an 8;
- stacked: rows of paper across the whole ink split it into two tall parts, one above the
  other (two digits written one under the other, a fraction): the model, which learnt side
  by side pairs as non-digits, read 66 of 100 such pairs as one digit;
- in a row: pieces of ink at least half the ink's height, each wholly right of the one before
  (a number written as one image): the model refuses most such pairs, but read a handwritten
  "10" as 0 at 0.67-0.84, its 1 a thin bar beside a round digit.

The limits sit beyond the extremes of MNIST's 70 000 digits (measured on the 28x28 images:
widest 2.5, most pieces 4, fullest box 0.87 among boxes not thinner than a bar, most holes 4
where sloppy strokes cross), so what the model answers for real digits is what it answered
before; "stacked" alone refuses some: 5 of the 70 000 (a 5's flag or a 3's lower stroke
written far apart; docs/performance.md, "Two digits one above the other"), and "in a row"
15 (a loop or stem written apart; "Several digits in one image").
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

INK = 0.3  # of the normalised 0..1 scale: what counts as ink here
MIN_PIECE_PIXELS = 3  # smaller bits (of ink or of paper) are anti-aliasing crumbs, not pieces
MAX_ASPECT = 3.0  # ink box width / height; MNIST's widest digit is 2.5
MAX_PIECES = 5  # separate pieces of ink; MNIST's digits come in 1 to 4
MAX_FILL = 0.92  # share of the ink's box that is ink; MNIST's boldest round digit fills 0.87
BAR_ASPECT = 0.4  # ...among boxes at least this wide for their height: a 1 is a full bar
MAX_HOLES = 5  # pieces of paper enclosed by ink; MNIST's digits have 0 to 4
ROW_PIECE_HEIGHT = 0.5  # of the ink's height: a piece this tall is a character of a row
STACK_PART = 0.25  # of the ink's height: each part above and below a stacked gap at least
STACK_GAP = 0.2  # of the ink's height: paper rows between them; MNIST's digits' gaps are less


@dataclass(frozen=True, slots=True)
class Shape:
    aspect: float  # width / height of the ink's box
    pieces: int
    fill: float  # ink pixels / box pixels
    holes: int  # pieces of paper the ink encloses
    stacked: bool = False  # two tall parts of ink, one above the other, paper between
    in_a_row: int = 1  # characters side by side (characters_in_a_row)

    def oddity(self) -> str | None:
        """Why no digit looks like this, in words, or None when nothing is odd."""
        if self.aspect > MAX_ASPECT:
            return f"its ink is {self.aspect:.1f} times wider than high"
        if self.pieces > MAX_PIECES:
            return f"its ink is in {self.pieces} separate pieces"
        if self.fill > MAX_FILL and self.aspect >= BAR_ASPECT:
            return f"ink fills {self.fill:.0%} of its box"
        if self.holes > MAX_HOLES:
            return f"its ink closes {self.holes} loops"
        if self.stacked:
            return "its ink is in two parts, one above the other"
        if self.in_a_row > 1:
            return self.row_words()
        return None

    def row_words(self) -> str:
        return f"it looks like {self.in_a_row} characters side by side"


def measure_shape(pixels: np.ndarray) -> Shape:
    """The signals of one (28, 28) float32 image in MNIST convention (white ink on black).

    Runs for every image answered, so it is a few OpenCV calls: the labelling without its
    per-component statistics costs a fifth of the labelling with them, the box of all the
    pieces is the box of all the ink, and only several pieces need their statistics (areas,
    boxes: one labelling with them serves both)."""
    ink = np.greater(pixels, INK).view(np.uint8)  # 0/1, no copy: OpenCV labels any non-zero
    count, _ = cv2.connectedComponents(ink, connectivity=8)
    if count <= 1:
        return Shape(aspect=1.0, pieces=0, fill=0.0, holes=0)
    _, _, width, height = cv2.boundingRect(ink)
    inked = cv2.countNonZero(ink)
    if count == 2:  # one piece, as most digits are: no areas to count, nothing in a row
        pieces, in_a_row = int(inked >= MIN_PIECE_PIXELS), 1
    else:
        _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
        pieces = int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= MIN_PIECE_PIXELS))
        in_a_row = _in_a_row(stats, height)
    fill = inked / (width * height)
    stacked = count > 2 and _stacked(ink)
    return Shape(width / height, pieces, fill, _holes(ink), stacked, in_a_row)


def _stacked(ink: np.ndarray) -> bool:
    """Whether rows of paper at least STACK_GAP of the ink's height cross the whole ink
    between a part above and a part below, each at least STACK_PART of it."""
    rows = np.flatnonzero(ink.any(axis=1))
    top, height = int(rows[0]), int(rows[-1] - rows[0] + 1)
    gaps = np.diff(rows) - 1  # paper rows after each inked row
    for index in np.flatnonzero(gaps >= STACK_GAP * height):
        above = int(rows[index]) - top + 1
        below = height - above - int(gaps[index])
        if min(above, below) >= STACK_PART * height:
            return True
    return False


def _holes(ink: np.ndarray) -> int:
    """Pieces of paper the ink encloses: paper that cannot reach the image's edge. Paper is
    4-connected where ink is 8-connected, so a diagonal gap in a stroke does not open a loop."""
    count, labels = cv2.connectedComponents(1 - ink, connectivity=4)
    if count == 2 and labels[0, 0] == 1:  # one piece of paper, around the ink: a 1, 2, 3, 5, 7
        return 0
    areas = np.bincount(labels.ravel(), minlength=count)
    areas[np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1]))] = 0
    return int(np.count_nonzero(areas[1:] >= MIN_PIECE_PIXELS))


def characters_in_a_row(pixels: np.ndarray) -> int:
    """How many characters an image holds side by side: its pieces of ink at least half the
    ink's height, when each lies wholly to the right of the one before (a number sent as one
    image). 1 when they are not in a row; a digit's own detached parts overlap across (a 5's
    flag) or are short (docs/performance.md, "Several digits in one image")."""
    ink = np.greater(pixels, INK).view(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count <= 2:
        return 1
    _, _, _, height = cv2.boundingRect(ink)
    return _in_a_row(stats, height)


def _in_a_row(stats: np.ndarray, height: int) -> int:
    """``characters_in_a_row`` from the pieces' statistics (OpenCV's) and the ink's height."""
    pieces = sorted(
        (int(left), int(left + width))
        for left, _, width, piece_height, area in stats[1:].tolist()
        if area >= MIN_PIECE_PIXELS and piece_height >= ROW_PIECE_HEIGHT * height
    )
    in_a_row = all(end <= start for (_, end), (start, _) in pairwise(pieces))
    return len(pieces) if len(pieces) >= 2 and in_a_row else 1
