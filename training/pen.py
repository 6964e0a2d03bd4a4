"""Letters and symbols as a pen draws them, from the Hershey stroke fonts.

The font glyphs of nondigits.py are printed type: filled outlines of even weight. A letter
written by hand is one line of one pen's width, often joined up, and a model that learnt to
doubt only printed letters read handwritten ones (a script E as 8, a cursive r as 2) with
confidence (docs/performance.md, "Issue 16, eighteenth round"). The Hershey fonts are centre
lines of strokes, the way a plotter draws them, so a glyph drawn along them with a round pen
of a chosen width is a pen's letter; a small jitter of every point and a slant make each
drawing a different hand. The fonts ship inside the `Hershey-Fonts` package: nothing is
downloaded.
"""

from __future__ import annotations

import numpy as np
from HersheyFonts import HersheyFonts
from PIL import Image, ImageDraw

from training.fonts import RENDER_SIZE, to_mnist_box

# A one-stroke sans, a one-stroke script, and a serif whose thick parts are two or three
# strokes side by side (a broad nib). Others (rowmans, scripts, scriptc, timesi, futuram) are
# never drawn here, so a probe can use them as hands training never saw.
TRAIN_FACES = ("futural", "cursive", "timesr")
DRAWINGS_PER_GLYPH = 6
GLYPH_SPAN = (0.6, 0.85)  # of the canvas: the glyph's longer side
PEN_WIDTH = (0.04, 0.12)  # of the canvas
SLANT = 0.25  # largest horizontal shear, either way
JITTER = 0.006  # of the canvas: a hand's tremor at every point of the stroke


def pen_glyphs(characters: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Each character of each face that has it, drawn DRAWINGS_PER_GLYPH times, as MNIST
    would hold it (white on black, fitted into the 20-pixel box)."""
    out: list[np.ndarray] = []
    for face in TRAIN_FACES:
        font = stroke_font(face)
        for character in characters:
            strokes = glyph_strokes(font, character)
            if not strokes:
                continue
            for _ in range(DRAWINGS_PER_GLYPH):
                fitted = to_mnist_box(draw_strokes(strokes, rng))
                if fitted is not None:
                    out.append(fitted)
    return out


def stroke_font(face: str) -> HersheyFonts:
    """One of the Hershey faces the package ships (``HersheyFonts().default_font_names``)."""
    font = HersheyFonts()
    font.load_default_font(face)
    return font


def glyph_strokes(font: HersheyFonts, character: str) -> list[np.ndarray]:
    """The character's strokes as (K, 2) float points in font units, y down; a face that
    lacks the character gives none. Single points are left out: a pen draws them as dots."""
    strokes = [np.array(stroke, dtype=float) for stroke in font.strokes_for_text(character)]
    return [stroke for stroke in strokes if len(stroke) >= 2]


def draw_strokes(strokes: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The strokes (font units, y down) drawn white on black with one round pen."""
    side = RENDER_SIZE
    shear = np.array([[1.0, rng.uniform(-SLANT, SLANT)], [0.0, 1.0]])
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = side * rng.uniform(*GLYPH_SPAN) / max(float((high - low).max()), 1.0)
    centre = (low + high) / 2
    width = max(2, round(side * rng.uniform(*PEN_WIDTH)))
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        placed = (stroke - centre) * scale @ shear.T + side / 2
        placed += rng.normal(0, side * JITTER, placed.shape)
        draw_pen_line(draw, placed, width, 255)
    return np.asarray(image)


def draw_pen_line(draw: ImageDraw.ImageDraw, points: np.ndarray, width: int, fill: int) -> None:
    """The line through ``points`` (K, 2) as a round pen draws it: curved joints, round ends
    (PIL's own ends are square)."""
    path = [(float(x), float(y)) for x, y in points]
    draw.line(path, fill=fill, width=width, joint="curve")
    for x, y in (path[0], path[-1]):
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=fill)
