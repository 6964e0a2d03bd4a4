"""Images that are not digits, as a person would send them, from sources training never used.

Training (training/nondigits.py) renders letters and symbols from the DejaVu and Liberation
fonts and draws its shapes and scribbles with its own generators. This set is held out from
all of that: letters and symbols in other fonts (GNU FreeFont and URW's base-35 fonts from
Debian, and Pillow's built-in Aileron), shapes drawn here (hearts, crescents, rings of dots,
houses, smileys, ...), and scribbles from other processes (spirals, Lissajous curves, coils,
wavy lines, hatching), and letters written with a pen along the strokes of Hershey faces
that training never draws (training/pen.py draws others). Each is black ink on white paper,
280x280, as a PNG.

Characters that people also write as digits are left out (O o Q D for 0; I l i | ! for 1;
Z z for 2; S s for 5; G b for 6; B for 8; g q for 9): no reader could call them wrong.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.pen import draw_pen_line, glyph_strokes, stroke_font

SIDE = 280
LETTERS = "ACEFHJKLMNPRTUVWXYacdefhjkmnprtuvwxy"
SYMBOLS = "#$%&*+<=>?@~^€£¥§¶©®±÷×¤"
SYMBOL_FONT_CHARACTERS = "αβγδλμπσΣΔΦΨΩ→←↑↓★♥♦♣♠"
# Regular, bold and italic cuts of families training never saw (fonts-freefont-ttf,
# fonts-urw-base35), found wherever the system keeps them.
FONT_FILES = (
    "FreeSans.ttf",
    "FreeSansBold.ttf",
    "FreeSerif.ttf",
    "FreeSerifItalic.ttf",
    "FreeMonoBold.ttf",
    "NimbusSans-Regular.otf",
    "NimbusRoman-Italic.otf",
    "URWGothic-Book.otf",
    "URWBookman-Demi.otf",
    "C059-Roman.otf",
    "P052-BoldItalic.otf",
    "Z003-MediumItalic.otf",
)
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# Stroke faces training never draws: a sans, a script, the script's double-stroke cut, an
# italic and a bold sans (a pen following a double stroke makes a wider, uneven line).
PEN_FACES = ("rowmans", "scripts", "scriptc", "timesi", "futuram")


def held_out_fonts() -> list[Path]:
    found = {
        path.name: path for folder in FONT_DIRS if folder.is_dir() for path in folder.rglob("*")
    }
    return [found[name] for name in FONT_FILES if name in found]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _sheet() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (SIDE, SIDE), 255)
    return image, ImageDraw.Draw(image)


def _has_glyph(font: ImageFont.FreeTypeFont, character: str) -> bool:
    """False for a character the font draws as its 'missing' box (or not at all)."""

    def drawn(text: str) -> bytes:
        image = Image.new("L", (200, 200), 0)
        ImageDraw.Draw(image).text((20, 10), text, fill=255, font=font)
        return image.tobytes()

    ink = drawn(character)
    return any(ink) and ink != drawn("\U0010fffd")


def glyph_images(fonts: list[ImageFont.FreeTypeFont], characters: str) -> list[bytes]:
    images = []
    for font in fonts:
        for character in characters:
            if not _has_glyph(font, character):
                continue
            image, draw = _sheet()
            draw.text((SIDE / 2, SIDE / 2), character, fill=0, font=font, anchor="mm")
            images.append(_png(image))
    return images


def _heart(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    t = np.linspace(0, 2 * np.pi, 200)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    scale = rng.uniform(5, 7)
    points = [(SIDE / 2 + scale * a, SIDE / 2 + scale * b) for a, b in zip(x, y, strict=True)]
    if rng.random() < 0.5:
        draw.polygon(points, fill=0)
    else:
        draw.line(points, fill=0, width=width, joint="curve")


def _crescent(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    r = rng.uniform(80, 110)
    draw.ellipse((SIDE / 2 - r, SIDE / 2 - r, SIDE / 2 + r, SIDE / 2 + r), fill=0)
    shift = rng.uniform(0.4, 0.7) * r
    draw.ellipse((SIDE / 2 - r + shift, SIDE / 2 - r, SIDE / 2 + r + shift, SIDE / 2 + r), fill=255)


def _ring_of_dots(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    count, r, dot = int(rng.integers(6, 12)), rng.uniform(70, 110), rng.uniform(8, 16)
    for a in np.linspace(0, 2 * np.pi, count, endpoint=False):
        x, y = SIDE / 2 + r * np.cos(a), SIDE / 2 + r * np.sin(a)
        draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=0)


def _house(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    w, h = rng.uniform(120, 180), rng.uniform(90, 130)
    left, top = SIDE / 2 - w / 2, SIDE / 2 - h / 4
    draw.rectangle((left, top, left + w, top + h), outline=0, width=width)
    draw.line((left, top, SIDE / 2, top - h * 0.7, left + w, top), fill=0, width=width)
    draw.rectangle((SIDE / 2 - 15, top + h - 50, SIDE / 2 + 15, top + h), outline=0, width=width)


def _smiley(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    r = rng.uniform(90, 120)
    c = SIDE / 2
    draw.ellipse((c - r, c - r, c + r, c + r), outline=0, width=width)
    for dx in (-r / 3, r / 3):
        draw.ellipse((c + dx - 10, c - r / 3 - 10, c + dx + 10, c - r / 3 + 10), fill=0)
    draw.arc((c - r / 2, c - r / 4, c + r / 2, c + r / 2), 20, 160, fill=0, width=width)


def _triangle(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    points = [tuple(p) for p in rng.uniform(30, SIDE - 30, size=(3, 2))]
    if rng.random() < 0.5:
        draw.polygon(points, fill=0)
    else:
        draw.polygon(points, outline=0, width=width)


def _checkerboard(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    cells = int(rng.integers(3, 6))
    size = 200 / cells
    for i in range(cells):
        for j in range(cells):
            if (i + j) % 2 == 0:
                x, y = 40 + i * size, 40 + j * size
                draw.rectangle((x, y, x + size, y + size), fill=0)


def _spiral(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    turns = rng.uniform(2.5, 4.5)
    t = np.linspace(0, 2 * np.pi * turns, 400)
    r = 8 + t * rng.uniform(4, 6)
    r = r * 110 / r.max()
    points = [
        (SIDE / 2 + a * np.cos(b), SIDE / 2 + a * np.sin(b)) for a, b in zip(r, t, strict=True)
    ]
    draw.line(points, fill=0, width=width, joint="curve")


def _lissajous(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    a, b = (int(v) for v in rng.choice([2, 3, 4, 5], size=2, replace=False))
    t = np.linspace(0, 2 * np.pi, 500)
    phase = rng.uniform(0, np.pi)
    points = [(SIDE / 2 + 110 * np.sin(a * s + phase), SIDE / 2 + 110 * np.sin(b * s)) for s in t]
    draw.line(points, fill=0, width=width, joint="curve")


def _coil(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    loops = int(rng.integers(4, 8))
    t = np.linspace(0, 2 * np.pi * loops, 600)
    x = 30 + (SIDE - 60) * t / t.max() + 25 * np.cos(t)
    y = SIDE / 2 + 45 * np.sin(t)
    draw.line(list(zip(x, y, strict=True)), fill=0, width=width, joint="curve")


def _wave(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    for row in range(int(rng.integers(2, 5))):
        x = np.linspace(20, SIDE - 20, 200)
        y = 60 + row * 50 + 18 * np.sin(x / rng.uniform(10, 25))
        draw.line(list(zip(x, y, strict=True)), fill=0, width=width // 2 + 2)


def _hatching(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    lines = int(rng.integers(5, 10))
    slope = rng.uniform(-1, 1)
    for i in range(lines):
        x = 30 + i * (SIDE - 60) / (lines - 1)
        draw.line((x, 40, x + slope * 200, 240), fill=0, width=width // 2 + 2)


SHAPES: dict[str, Callable[[ImageDraw.ImageDraw, np.random.Generator, int], None]] = {
    "heart": _heart,
    "crescent": _crescent,
    "ring_of_dots": _ring_of_dots,
    "house": _house,
    "smiley": _smiley,
    "triangle": _triangle,
    "checkerboard": _checkerboard,
}
SCRIBBLES: dict[str, Callable[[ImageDraw.ImageDraw, np.random.Generator, int], None]] = {
    "spiral": _spiral,
    "lissajous": _lissajous,
    "coil": _coil,
    "wave": _wave,
    "hatching": _hatching,
}


def drawn_images(
    kinds: dict[str, Callable[[ImageDraw.ImageDraw, np.random.Generator, int], None]],
    per_kind: int,
    seed: int,
) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for draw_kind in kinds.values():
        for _ in range(per_kind):
            image, draw = _sheet()
            draw_kind(draw, rng, int(rng.integers(6, 18)))
            images.append(_png(image))
    return images


def pen_letters(seed: int) -> list[bytes]:
    """LETTERS written along each PEN_FACES glyph's strokes with a round pen 5-15 pixels
    wide, the letter 150-200 pixels tall or wide, turned up to 8 degrees either way."""
    rng = np.random.default_rng(seed)
    images = []
    for face in PEN_FACES:
        font = stroke_font(face)
        for letter in LETTERS:
            image, draw = _sheet()
            _write(draw, glyph_strokes(font, letter), rng)
            images.append(_png(image))
    return images


def _write(draw: ImageDraw.ImageDraw, strokes: list[np.ndarray], rng: np.random.Generator) -> None:
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = rng.uniform(150, 200) / float((high - low).max())
    turn = np.deg2rad(rng.uniform(-8, 8))
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    width = int(rng.integers(5, 16))
    for stroke in strokes:
        draw_pen_line(draw, (stroke - (low + high) / 2) * scale @ rotation.T + SIDE / 2, width, 0)


def open_fonts(font_paths: list[Path], size: int = 110) -> list[ImageFont.FreeTypeFont]:
    """The fonts at ``size``, and Pillow's built-in Aileron, which is always there."""
    fonts = [ImageFont.truetype(str(path), size) for path in font_paths]
    fonts.append(ImageFont.load_default(size=size))
    return fonts


def nondigit_set(font_paths: list[Path], size: int = 110) -> dict[str, list[bytes]]:
    """The held-out non-digits by kind: letters, symbols, shapes, scribbles, handwriting."""
    fonts = open_fonts(font_paths, size)
    symbol_fonts = [f for f in fonts if isinstance(f.path, str) and "Free" in f.path] or fonts
    return {
        "letters": glyph_images(fonts, LETTERS),
        "symbols": glyph_images(fonts, SYMBOLS)
        + glyph_images(symbol_fonts, SYMBOL_FONT_CHARACTERS),
        "shapes": drawn_images(SHAPES, 12, seed=16),
        "scribbles": drawn_images(SCRIBBLES, 16, seed=61),
        "handwriting": pen_letters(seed=7),
    }
