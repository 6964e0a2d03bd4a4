"""Things that are not digits, for outlier exposure (Hendrycks et al., ICLR 2019).

A classifier trained on digits alone answers every image with a digit, often confidently: a
letter A as 4, a square as 0, a scribble as 8. Outlier exposure shows it non-digits during
training with a loss that pushes their predicted distribution towards uniform, so its top
probability becomes a usable "is this a digit at all" score.

The non-digits are made here, nothing is downloaded: letters and symbols rendered from the
machine's fonts, geometric shapes, scribbles and zigzags (a pool drawn once per run), and,
from each batch's own digits, pieces of a digit and two digits side by side. Every one is
normalised as the service normalises what it is sent (ink fitted into the 20x20 box, centred
by mass, white on black; ``fonts.to_mnist_box``), then augmented with the digits.

Characters that people also write as digits (O and o for 0, I, l and | for 1, Z for 2, S for
5, b and G for 6, B for 8, g and q for 9, ...) are never non-digits: nobody could tell them
from the digit, and teaching the model to doubt them would teach it to doubt real digits.

Some kinds are kept apart for choosing the reject threshold (``validation_nondigits``):
characters and generators that training never shows, so the threshold is chosen on
non-digits the model has not learnt by heart.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from training.augment import INK_THRESHOLD
from training.config import IMAGE_SIDE
from training.fonts import open_font, render_text, to_mnist_box
from training.pen import pen_glyphs
from training.validation_drawings import validation_drawings

logger = logging.getLogger("training.nondigits")

# Letters and symbols unlike any digit; the unicode ones are in DejaVu and Liberation. The
# lowercase j is left out: learning it cost scikit-learn's hooked 9s (docs/performance.md,
# "Issue 16, thirteenth round").
TRAIN_CHARACTERS = "ACEFHJKLMNPRTUVWXYacdefhkmnprtuvwxy#$%&*+<=>?@^~αβγδλμπσΩΣΔΦΨ★♥♦♣♠→←↑↓✓€£¥§¶©®"
# Never trained on: the rule is chosen on these (and on words of letters, a held-out kind).
VALIDATION_CHARACTERS = "θξζΓΛΠ♪☺✔✚¤±÷×Ж"
CANVAS = 96  # shapes and scribbles are drawn at this size, then fitted like a glyph
POOL_SHAPES = 1500
POOL_SCRIBBLES = 1500
PAIR_SHARE = 0.1  # of a batch's non-digits: two of its digits side by side
PIECE_SHARE = 0.1  # ... and a piece of one of its digits
MIN_PIECE, MAX_PIECE = 0.15, 0.6  # share of the digit's ink a piece keeps


@dataclass(frozen=True)
class NonDigitPool:
    """Pre-rendered non-digits (K, 28, 28) uint8, white on black, and where each came from."""

    images: np.ndarray
    kinds: np.ndarray  # (K,) str: training's "glyph", "shape", "scribble", "pen"; validation's
    # "glyph", "word", "drawing"


def _missing_glyph(font: ImageFont.FreeTypeFont) -> np.ndarray:
    """What the font draws for a character it lacks (its .notdef box), to recognise it."""
    return render_text(font, "\U0010fffd")


def render_glyphs(font_paths: list[Path], characters: str) -> list[np.ndarray]:
    """Every character the font really has, as MNIST would hold it (read-only arrays).

    Rendered once per process for a set of fonts and characters: a training run asks once,
    but the tests fit many small models, and each one rendered them all again."""
    return list(_rendered_glyphs(tuple(font_paths), characters))


@functools.lru_cache(maxsize=4)
def _rendered_glyphs(font_paths: tuple[Path, ...], characters: str) -> tuple[np.ndarray, ...]:
    out: list[np.ndarray] = []
    for path in font_paths:
        font = open_font(path)
        if font is None:
            continue
        missing = _missing_glyph(font)
        for character in characters:
            drawn = render_text(font, character)
            if np.array_equal(drawn, missing):
                continue
            fitted = to_mnist_box(drawn)
            if fitted is not None:
                fitted.flags.writeable = False  # shared by every caller
                out.append(fitted)
    return tuple(out)


def _width(rng: np.random.Generator) -> int:
    return int(rng.integers(4, 13))


def draw_shape(rng: np.random.Generator) -> np.ndarray:
    """A polygon, star, rectangle, filled ellipse, cross, arrow, grid, or clip art of three
    to five arcs, ellipses, rectangles and lines: outline or filled.

    A lone outlined ellipse is left out: one is a 0.
    """
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    centre, radius = CANVAS / 2, CANVAS * rng.uniform(0.3, 0.45)
    kind = int(rng.integers(0, 8))
    fill = 255 if rng.random() < 0.4 else None
    if kind == 7:  # clip art: three to five primitives on top of each other
        for _ in range(int(rng.integers(3, 6))):
            (x0, x1), (y0, y1) = np.sort(rng.uniform(CANVAS * 0.1, CANVAS * 0.9, (2, 2)), axis=1)
            box = (x0, y0, x1 + 2, y1 + 2)
            primitive = int(rng.integers(0, 4))
            if primitive == 0:
                start, end = sorted(rng.uniform(0, 360, 2))
                draw.arc(box, start, end, fill=255, width=_width(rng))
            elif primitive == 1:
                draw.ellipse(box, outline=255, width=_width(rng))
            elif primitive == 2:
                draw.rectangle(box, outline=255, fill=fill, width=_width(rng))
            else:
                draw.line(box, fill=255, width=_width(rng))
    elif kind == 0:  # regular or irregular polygon, 3..8 corners
        corners = int(rng.integers(3, 9))
        angles = (
            np.sort(rng.uniform(0, 2 * np.pi, corners))
            if rng.random() < 0.5
            else (np.arange(corners) * 2 * np.pi / corners + rng.uniform(0, np.pi))
        )
        points = [(centre + radius * np.cos(a), centre + radius * np.sin(a)) for a in angles]
        draw.polygon(points, outline=255, fill=fill, width=_width(rng))
    elif kind == 1:  # star
        tips = int(rng.integers(5, 9))
        inner = rng.uniform(0.35, 0.55)
        angles = np.arange(2 * tips) * np.pi / tips
        radii = np.where(np.arange(2 * tips) % 2 == 0, radius, radius * inner)
        points = [
            (centre + r * np.cos(a), centre + r * np.sin(a))
            for r, a in zip(radii, angles, strict=True)
        ]
        draw.polygon(points, outline=255, fill=fill, width=_width(rng))
    elif kind == 2:  # rectangle, any proportion
        w, h = CANVAS * rng.uniform(0.3, 0.9, 2)
        box = (centre - w / 2, centre - h / 2, centre + w / 2, centre + h / 2)
        draw.rectangle(box, outline=255, fill=fill, width=_width(rng))
    elif kind == 3:  # filled ellipse or disc
        w, h = CANVAS * rng.uniform(0.3, 0.9, 2)
        draw.ellipse((centre - w / 2, centre - h / 2, centre + w / 2, centre + h / 2), fill=255)
    elif kind == 4:  # cross: + or x
        turn = rng.uniform(0, np.pi / 2)
        for angle in (turn, turn + np.pi / 2):
            dx, dy = radius * np.cos(angle), radius * np.sin(angle)
            draw.line((centre - dx, centre - dy, centre + dx, centre + dy), 255, _width(rng))
    elif kind == 5:  # arrow
        angle = rng.uniform(0, 2 * np.pi)
        dx, dy = radius * np.cos(angle), radius * np.sin(angle)
        tip = (centre + dx, centre + dy)
        width = _width(rng)
        draw.line((centre - dx, centre - dy, *tip), 255, width)
        for side in (0.8, -0.8):
            back = angle + np.pi + side
            end = (tip[0] + 0.5 * radius * np.cos(back), tip[1] + 0.5 * radius * np.sin(back))
            draw.line((*tip, *end), 255, width)
    else:  # a grid or hatching
        lines = int(rng.integers(3, 6))
        width = _width(rng) // 2 + 2
        for i in range(lines):
            at = CANVAS * (0.15 + 0.7 * i / (lines - 1))
            draw.line((at, CANVAS * 0.1, at, CANVAS * 0.9), 255, width)
            if rng.random() < 0.7:
                draw.line((CANVAS * 0.1, at, CANVAS * 0.9, at), 255, width)
    return np.asarray(image)


def draw_scribble(rng: np.random.Generator) -> np.ndarray:
    """A scribble: a pen wandering with sharp turns (8..20 points), a zigzag, a few strokes
    that do not meet, or a smooth doodle through 8..13 points. Simpler strokes are left out:
    one or two lines can be a digit."""
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    width = _width(rng)
    kind = int(rng.integers(0, 4))
    low, high = CANVAS * 0.1, CANVAS * 0.9
    if kind == 3:  # a smooth, curly line: loops and turns, as a pen doodles
        nodes = rng.uniform(low, high, size=(int(rng.integers(8, 14)), 2))
        t = np.linspace(0, 1, len(nodes))
        fine = np.linspace(0, 1, 200)
        curve = np.stack([np.interp(fine, t, nodes[:, i]) for i in range(2)], axis=1)
        kernel = np.hanning(15) / np.hanning(15).sum()
        smooth = np.stack(
            [np.convolve(np.pad(curve[:, i], 7, mode="edge"), kernel, "valid") for i in range(2)],
            axis=1,
        )
        draw.line([tuple(p) for p in smooth], fill=255, width=width, joint="curve")
    elif kind == 0:
        points = rng.uniform(low, high, size=(int(rng.integers(8, 21)), 2))
        draw.line([tuple(p) for p in points], fill=255, width=width, joint="curve")
    elif kind == 1:
        teeth = int(rng.integers(4, 9))
        xs = np.linspace(low, high, 2 * teeth + 1)
        ys = np.where(np.arange(len(xs)) % 2 == 0, low, high) + rng.normal(0, 4, len(xs))
        points = np.stack([xs, ys], axis=1)
        if rng.random() < 0.5:
            points = points[:, ::-1]
        draw.line([tuple(p) for p in points], fill=255, width=width, joint="curve")
    else:
        for _ in range(int(rng.integers(4, 8))):
            start = rng.uniform(low, high, 2)
            end = np.clip(start + rng.normal(0, CANVAS * 0.15, 2), low, high)
            draw.line((*start, *end), fill=255, width=width)
    return np.asarray(image)


def _drawn(kind: str, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    draw = draw_shape if kind == "shape" else draw_scribble
    out: list[np.ndarray] = []
    while len(out) < count:
        fitted = to_mnist_box(draw(rng))
        if fitted is not None:
            out.append(fitted)
    return out


def build_pool(font_paths: list[Path], seed: int) -> NonDigitPool:
    """Glyphs of TRAIN_CHARACTERS in every font and drawn by a pen, plus drawn shapes and
    scribbles."""
    rng = np.random.default_rng(seed)
    parts = {
        "glyph": render_glyphs(font_paths, TRAIN_CHARACTERS),
        "shape": _drawn("shape", POOL_SHAPES, rng),
        "scribble": _drawn("scribble", POOL_SCRIBBLES, rng),
        "pen": pen_glyphs("".join(c for c in TRAIN_CHARACTERS if c.isascii()), rng),
    }
    images = [image for group in parts.values() for image in group]
    kinds = [kind for kind, group in parts.items() for _ in group]
    logger.info(
        "non-digit pool: %s", ", ".join(f"{len(group)} {kind}s" for kind, group in parts.items())
    )
    return NonDigitPool(np.stack(images), np.array(kinds))


def pairs(digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Two digits side by side, as one image normalised as a whole: each half as wide."""
    n = digits.shape[0]
    other = digits[torch.randperm(n, generator=generator)]
    side = IMAGE_SIDE
    canvas = torch.zeros(n, 1, 2 * side, 2 * side, dtype=digits.dtype)
    overlap = int(torch.randint(0, 6, (1,), generator=generator))
    top = side // 2
    canvas[:, :, top : top + side, overlap : overlap + side] = digits
    right = canvas[:, :, top : top + side, side - overlap : 2 * side - overlap]
    canvas[:, :, top : top + side, side - overlap : 2 * side - overlap] = torch.maximum(
        right, other
    )
    return F.avg_pool2d(canvas, 2)  # 28x28 holding the pair; the augmentation refits it


def pieces(digits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A corner of each digit (cut across both ways, the rest erased): a fragment with cut
    strokes. Kept only when it holds 15-60 % of the digit's ink, and never from a 1, whose
    every piece is a 1 again; the others come back blank (the caller drops blank images)."""
    n = digits.shape[0]
    index = torch.arange(IMAGE_SIDE).view(1, -1)
    cut_rows, cut_cols = (torch.randint(11, 18, (n, 1), generator=generator) for _ in range(2))
    below, right = (torch.randint(0, 2, (n, 1), generator=generator).bool() for _ in range(2))
    keep_rows = torch.where(below, index >= cut_rows, index < cut_rows)  # (n, 28)
    keep_cols = torch.where(right, index >= cut_cols, index < cut_cols)
    keep = (keep_rows.unsqueeze(2) & keep_cols.unsqueeze(1)).unsqueeze(1)
    out = digits * keep
    share = out.sum(dim=(1, 2, 3)) / digits.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    usable = (share >= MIN_PIECE) & (share <= MAX_PIECE) & (labels != 1)
    return out * usable.view(n, 1, 1, 1)


class NonDigitSource:
    """Each batch's non-digits: drawn from the pool, plus pairs and pieces of its digits."""

    def __init__(self, pool: NonDigitPool) -> None:
        self.pool = torch.from_numpy(pool.images).to(torch.float32).div_(255.0).unsqueeze(1)
        kinds, counts = np.unique(pool.kinds, return_counts=True)
        self.counts = {str(kind): int(count) for kind, count in zip(kinds, counts, strict=True)}

    def batch(
        self, count: int, digits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        n_pairs = min(round(PAIR_SHARE * count), len(digits))
        n_pieces = min(round(PIECE_SHARE * count), len(digits))
        drawn = count - n_pairs - n_pieces
        pick = torch.randint(len(self.pool), (drawn,), generator=generator)
        parts = [self.pool[pick]]
        if n_pairs:
            parts.append(pairs(digits[:n_pairs], generator))
        if n_pieces:
            parts.append(pieces(digits[-n_pieces:], labels[-n_pieces:], generator))
        out = torch.cat(parts)
        has_ink = out.amax(dim=(1, 2, 3)) > INK_THRESHOLD
        return out[has_ink]  # a piece of a digit can be empty


def validation_nondigits(font_paths: list[Path], seed: int) -> NonDigitPool:
    """Non-digits of kinds training never shows: other characters and words of two or three
    of them side by side, in the training fonts, and drawings (validation_drawings.py)."""
    rng = np.random.default_rng(seed)
    glyphs = render_glyphs(font_paths, VALIDATION_CHARACTERS)
    words: list[np.ndarray] = []
    letters = [c for c in TRAIN_CHARACTERS if c.isascii() and c.isalpha()]
    for path in font_paths[:: max(1, len(font_paths) // 8)]:
        font = open_font(path)
        if font is None:
            continue
        for _ in range(40):
            word = "".join(rng.choice(list(letters), size=int(rng.integers(2, 4))))
            fitted = to_mnist_box(render_text(font, word))
            if fitted is not None:
                words.append(fitted)
    drawings = validation_drawings(seed)
    images = glyphs + words + drawings
    kinds = ["glyph"] * len(glyphs) + ["word"] * len(words) + ["drawing"] * len(drawings)
    return NonDigitPool(np.stack(images), np.array(kinds))
