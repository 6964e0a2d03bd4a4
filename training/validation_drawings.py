"""Drawings for choosing the reject rule: kinds that neither training nor the tests draw.

With characters and words alone, nothing among the validation non-digits looked like the
drawn non-digits that move a model's refusals most, and the validation figure said next to
nothing about how many held-out drawings a model refuses; with these it says more
(docs/performance.md, "Issue 16, fifth round"). Training's generators (nondigits.draw_shape,
draw_scribble) and the tests' (tests/service/nondigit_images.py) draw other things, so no
model has learnt these.

None is a digit: a flower's outline has three to six lobes (never two: that would be an
ellipse, a 0), a target has two or three rings, chevrons come three to five, a tally four to
six strokes crossed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from training.fonts import to_mnist_box

CANVAS = 96  # drawn at this size, then fitted as a glyph is (fonts.to_mnist_box)
PER_KIND = 60

Draw = Callable[[ImageDraw.ImageDraw, np.random.Generator], None]


def _width(rng: np.random.Generator) -> int:
    return int(rng.integers(4, 13))


def _flower(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    lobes, depth = int(rng.integers(3, 7)), rng.uniform(0.2, 0.4)
    radius, turn = CANVAS * rng.uniform(0.3, 0.42), rng.uniform(0, 2 * np.pi)
    angles = np.linspace(0, 2 * np.pi, 200)
    radii = radius * (1 - depth + depth * np.sin(lobes * angles + turn))
    centre = CANVAS / 2
    points = [
        (centre + r * np.cos(a), centre + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)
    ]
    draw.line([*points, points[0]], fill=255, width=_width(rng), joint="curve")


def _target(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    centre, width = CANVAS / 2, _width(rng) // 2 + 2
    outline = draw.rectangle if rng.random() < 0.5 else draw.ellipse
    for ring in range(int(rng.integers(2, 4))):
        r = CANVAS * (0.44 - ring * rng.uniform(0.1, 0.14))
        outline((centre - r, centre - r, centre + r, centre + r), outline=255, width=width)


def _chevrons(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    count, width, sideways = int(rng.integers(3, 6)), _width(rng) // 2 + 2, rng.random() < 0.5
    for index in range(count):
        at = CANVAS * (0.15 + 0.7 * index / (count - 1))
        points = [
            (CANVAS * 0.15, at - CANVAS * 0.12),
            (CANVAS * 0.5, at + CANVAS * 0.05),
            (CANVAS * 0.85, at - CANVAS * 0.12),
        ]
        if sideways:  # pointing right instead of down
            points = [(y, x) for x, y in points]
        draw.line(points, fill=255, width=width, joint="curve")


def _tally(draw: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    width = _width(rng) // 2 + 2
    for x in np.linspace(CANVAS * 0.15, CANVAS * 0.85, int(rng.integers(4, 7))):
        draw.line((x, CANVAS * 0.15, x + rng.normal(0, 2), CANVAS * 0.85), fill=255, width=width)
    draw.line((CANVAS * 0.05, CANVAS * 0.7, CANVAS * 0.95, CANVAS * 0.3), fill=255, width=width)


KINDS: dict[str, Draw] = {
    "flower": _flower,
    "target": _target,
    "chevrons": _chevrons,
    "tally": _tally,
}


def validation_drawings(seed: int, per_kind: int = PER_KIND) -> list[np.ndarray]:
    """``per_kind`` drawings of each kind, white on black, as MNIST would hold them."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for draw_kind in KINDS.values():
        for _ in range(per_kind):
            image = Image.new("L", (CANVAS, CANVAS), 0)
            draw_kind(ImageDraw.Draw(image), rng)
            fitted = to_mnist_box(np.asarray(image))
            if fitted is not None:
                out.append(fitted)
    return out
