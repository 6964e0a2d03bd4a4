"""Printed digits from the machine's fonts, mixed into training as a small share of examples.

MNIST's writers share one school's habits: a "1" is a bare stroke, a "7" has no bar, a "4" is
open. People elsewhere, and anything printed, write a "1" with a flag and a base, a closed "4",
a crossed "7"; a model that never saw those reads a serif "1" as a 7. Rendering the digits of
a few common typefaces (sans, serif, mono; regular, bold, italic) and passing them through the
same augmentation as MNIST (slant, rotation, stroke width, elastic wobble, low resolution)
teaches those shapes without collecting data. The validation split stays pure MNIST, so the
checkpoint is still chosen on handwriting.

Fonts come from the system's font folders; which ones were used (names and SHA-256) goes in
the model card, since a machine with other fonts trains a slightly different model.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.config import DIGIT_BOX, IMAGE_SIDE, NUM_CLASSES

logger = logging.getLogger("training.fonts")

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# Text faces with ordinary digits; symbol and maths fonts are left out. Besides DejaVu and
# Liberation (whose 1 mostly has a base), faces that print the 1 as a bare flag and stem, as
# Helvetica, Arial and most screen fonts do: without them that 1 was read as a 7
# (docs/performance.md, "Issue 16, seventh round"). Debian: fonts-croscore, fonts-roboto-
# unhinted, fonts-open-sans, fonts-lato, fonts-cantarell (scripts/test-tools.sh installs them).
FONT_PATTERNS = (
    "DejaVuSans*.ttf",
    "DejaVuSerif*.ttf",
    "Liberation*.ttf",
    "Arimo*.ttf",
    "Cousine*.ttf",
    "Tinos*.ttf",
    "Roboto-*.ttf",
    "OpenSans-*.ttf",
    "Lato-*.ttf",
    "Cantarell-*.otf",
)
RENDER_SIZE = 96  # glyphs are drawn large, then reduced like MNIST's 20-pixel box
INK_LEVEL = 32  # of 255: what counts as ink when measuring the glyph's box


@dataclass(frozen=True)
class FontDigits:
    """Rendered digits: images (K, 28, 28) uint8 white on black, labels (K,), font ids."""

    images: np.ndarray
    labels: np.ndarray
    fonts: dict[str, str]  # file name -> sha256 of the font file


def find_fonts(dirs: tuple[Path, ...] = FONT_DIRS) -> list[Path]:
    """Font files matching FONT_PATTERNS, sorted by name so the order never depends on disk."""
    found = {
        path.name: path
        for folder in dirs
        if folder.is_dir()
        for pattern in FONT_PATTERNS
        for path in folder.rglob(pattern)
    }
    return [found[name] for name in sorted(found)]


def to_mnist_box(pixels: np.ndarray) -> np.ndarray | None:
    """Any white-on-black ink image as MNIST holds a digit: the ink's box fitted so that its
    longer side is 20 pixels (aspect kept), its centre of mass at (14, 14); None if blank.

    The service normalises every image it is sent this way, so what training makes of a
    glyph, a shape or a scribble is what the model will see of one at serving time.
    """
    rows, cols = np.nonzero(pixels >= INK_LEVEL)
    if rows.size == 0:
        return None
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    glyph = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
    scale = DIGIT_BOX / max(glyph.size)
    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    small = np.asarray(glyph.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    total = small.sum()
    if total <= 0:
        return None
    cy = (small.sum(axis=1) * np.arange(small.shape[0])).sum() / total
    cx = (small.sum(axis=0) * np.arange(small.shape[1])).sum() / total
    top, left = round(IMAGE_SIDE / 2 - cy), round(IMAGE_SIDE / 2 - cx)
    out = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    top, left = min(max(top, 0), IMAGE_SIDE - size[1]), min(max(left, 0), IMAGE_SIDE - size[0])
    out[top : top + size[1], left : left + size[0]] = small
    return np.clip(out, 0, 255).astype(np.uint8)


def render_text(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    """``text`` drawn large, white on black, on a canvas with room around it."""
    canvas = Image.new("L", (2 * RENDER_SIZE * max(1, len(text)), 2 * RENDER_SIZE), 0)
    ImageDraw.Draw(canvas).text((RENDER_SIZE // 2, RENDER_SIZE // 4), text, fill=255, font=font)
    return np.asarray(canvas)


def render_digit(font: ImageFont.FreeTypeFont, digit: int) -> np.ndarray | None:
    """One digit as MNIST would hold it: longest side 20 pixels, centre of mass at (14, 14)."""
    return to_mnist_box(render_text(font, str(digit)))


def open_font(path: Path) -> ImageFont.FreeTypeFont | None:
    """The font at RENDER_SIZE, or None (logged) when the file cannot be read as one."""
    try:
        return ImageFont.truetype(str(path), RENDER_SIZE)
    except OSError as exc:
        logger.warning("skipping font %s: %s", path, exc)
        return None


def render_font_digits(paths: list[Path]) -> FontDigits:
    """Every digit in every font; a font that cannot be read or lacks a digit is skipped."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    used: dict[str, str] = {}
    for path in paths:
        font = open_font(path)
        if font is None:
            continue
        glyphs = [render_digit(font, digit) for digit in range(NUM_CLASSES)]
        if any(glyph is None for glyph in glyphs):
            logger.warning("skipping font %s: some digit has no ink", path)
            continue
        images.extend(glyph for glyph in glyphs if glyph is not None)
        labels.extend(range(NUM_CLASSES))
        used[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    if not images:
        empty = np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
        return FontDigits(empty, np.zeros(0, dtype=np.int64), used)
    return FontDigits(np.stack(images), np.array(labels, dtype=np.int64), used)
