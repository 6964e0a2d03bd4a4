"""Draw the README's example images, the same pixels on every run (fixed seeds, no downloads).

    .venv/bin/python examples/make_examples.py            # rewrites examples/*.png, *.jpg

digit.png        a handwritten 3, dark ink on white paper, as a scanner gives it
photo.jpg        a ballpoint 5 on ruled notebook paper, photographed at an angle: uneven light,
                 a shadow, blur, sensor noise and JPEG compression
canvas.png       a 2 drawn on a web canvas and exported with alpha: ink on full transparency
not-a-digit.png  a house doodle: the model still names a digit, with a low confidence

Strokes are pen paths in a unit square (y down), smoothed, jittered like a hand, drawn with a
pen whose width follows the pressure, four times larger than the output and then reduced.
Needs numpy and Pillow only (both come with `make serve`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SUPERSAMPLE = 4

Point = tuple[float, float]


def arc(
    cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int
) -> list[Point]:
    """n + 1 points along an ellipse; degrees, 0 = right, 90 = down."""
    return [
        (
            cx + rx * math.cos(math.radians(start + (end - start) * i / n)),
            cy + ry * math.sin(math.radians(start + (end - start) * i / n)),
        )
        for i in range(n + 1)
    ]


def polyline(corners: Sequence[Point], per_edge: int = 6) -> list[Point]:
    """Points along straight edges, so that smoothing keeps the corners."""
    points = []
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:], strict=True):
        points += [
            (x0 + (x1 - x0) * i / per_edge, y0 + (y1 - y0) * i / per_edge) for i in range(per_edge)
        ]
    return points + [corners[-1]]


def smooth(points: Sequence[Point], per_segment: int = 12) -> np.ndarray:
    """A Catmull-Rom spline through the points: a pen moves in curves, not corners."""
    p = np.asarray(points, dtype=np.float64)
    p = np.vstack([p[0], p, p[-1]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        for t in np.linspace(0.0, 1.0, per_segment, endpoint=False):
            out.append(
                0.5
                * (
                    2 * p1
                    + (p2 - p0) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t * t
                    + (3 * p1 - p0 - 3 * p2 + p3) * t**3
                )
            )
    out.append(p[-2])
    return np.asarray(out)


def hand(
    strokes: list[list[Point]], rng: np.random.Generator, wobble: float, slant: float
) -> list[np.ndarray]:
    """The digit slanted and bent by a smooth random field: no two hands alike, no kinks."""
    phases = rng.uniform(0.0, 2 * np.pi, (2, 3))
    frequencies = rng.uniform(1.0, 2.5, (2, 3, 2))
    moved = []
    for stroke in strokes:
        pts = smooth(stroke)
        for axis in range(2):
            waves = np.sin(2 * np.pi * pts @ frequencies[axis].T + phases[axis])
            pts[:, axis] += wobble * waves.sum(axis=1) / 3
        pts[:, 0] += slant * (0.5 - pts[:, 1])
        moved.append(pts)
    return moved


def ink(
    size: tuple[int, int],
    strokes: list[np.ndarray],
    box: tuple[float, float, float, float],
    width: float,
) -> np.ndarray:
    """Coverage (0..1) of the strokes drawn into ``box`` (x, y, w, h in output pixels)."""
    w, h = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    bx, by, bw, bh = (v * SUPERSAMPLE for v in box)
    for stroke in strokes:
        xy = np.column_stack([bx + stroke[:, 0] * bw, by + stroke[:, 1] * bh])
        # Dense samples, each a disc: the pen presses harder mid-stroke than where it lands.
        steps = np.hypot(*np.diff(xy, axis=0).T)
        total = max(float(steps.sum()), 1.0)
        along = np.concatenate([[0.0], np.cumsum(steps)]) / total
        dense = np.linspace(0.0, 1.0, int(total / 0.7) + 2)
        xs, ys = np.interp(dense, along, xy[:, 0]), np.interp(dense, along, xy[:, 1])
        radius = width * SUPERSAMPLE / 2 * (0.65 + 0.35 * np.sin(np.pi * dense) ** 0.5)
        for x, y, r in zip(xs, ys, radius, strict=True):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    small = canvas.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


THREE = [arc(0.47, 0.29, 0.26, 0.2, 205, 445, 10) + arc(0.47, 0.7, 0.3, 0.23, -95, 155, 12)]
FIVE = [
    [(0.74, 0.12), (0.5, 0.1), (0.3, 0.13)],
    [(0.31, 0.12), (0.28, 0.46)] + arc(0.5, 0.66, 0.27, 0.24, -130, 150, 14),
]
TWO = [arc(0.5, 0.33, 0.27, 0.22, 195, 375, 10) + [(0.55, 0.6), (0.25, 0.88), (0.8, 0.87)]]
HOUSE = [
    polyline([(0.2, 0.45), (0.2, 0.9), (0.8, 0.9), (0.8, 0.45)]),
    polyline([(0.12, 0.5), (0.5, 0.12), (0.88, 0.5)]),
    polyline([(0.42, 0.9), (0.42, 0.68), (0.58, 0.68), (0.58, 0.9)], 3),
]


def digit_png(path: Path) -> None:
    rng = np.random.default_rng(3)
    coverage = ink((160, 200), hand(THREE, rng, 0.04, 0.12), (28, 22, 104, 156), 9.0)
    paper = 246.0 + rng.normal(0.0, 1.5, coverage.shape)
    pixels = paper * (1 - coverage) + 34.0 * coverage
    Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "L").save(path)


def photo_jpg(path: Path) -> None:
    rng = np.random.default_rng(5)
    w, h, edge = 800, 600, 40  # the sheet is drawn larger than the frame: it fills the photo
    sw, sh = w + 2 * edge, h + 2 * edge
    coverage = ink((sw, sh), hand(FIVE, rng, 0.04, 0.15), (340, 190, 190, 300), 9.0)
    yy, xx = np.mgrid[0:sh, 0:sw] / np.array([sh, sw]).reshape(2, 1, 1)
    # Warm paper under a lamp at the top left, darker towards the far corner.
    light = 1.0 - 0.28 * np.hypot(xx - 0.15, yy - 0.1)
    # A phone's shadow over the bottom right, soft edged.
    light *= 1.0 - 0.35 / (1.0 + np.exp(-(xx + yy - 1.45) * 18))
    paper = np.stack([236.0, 229.0, 212.0])[:, None, None] * light
    # Ruled lines every 42 px and a red margin: a school notebook.
    rule = (np.abs((np.arange(sh) - 30) % 42 - 21) < 1.2)[:, None] * np.ones((1, sw))
    margin = (np.abs(np.arange(sw) - 160) < 1.5)[None, :] * np.ones((sh, 1))
    paper = paper * (1 - 0.18 * rule) + np.array([120.0, 150, 200])[:, None, None] * 0.18 * rule
    paper = paper * (1 - 0.3 * margin) + np.array([210.0, 90, 90])[:, None, None] * 0.3 * margin
    pen = np.array([38.0, 52.0, 120.0])[:, None, None] * light
    rgb = paper * (1 - coverage) + pen * coverage
    rgb = rgb.transpose(1, 2, 0) + rng.normal(0.0, 4.0, (sh, sw, 3))
    image = Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")
    # Held at an angle: a mild perspective, the frame inside the sheet, the camera's focus.
    coefficients = (1.04, 0.05, -30.0, -0.02, 1.02, 10.0, 4e-5, 2e-5)
    image = image.transform((sw, sh), Image.Transform.PERSPECTIVE, coefficients, Image.BICUBIC)
    image = image.crop((edge, edge, edge + w, edge + h))
    image = image.filter(ImageFilter.GaussianBlur(1.1))
    image.save(path, quality=82, optimize=True)


def canvas_png(path: Path) -> None:
    rng = np.random.default_rng(2)
    coverage = ink((280, 280), hand(TWO, rng, 0.03, 0.05), (50, 40, 180, 200), 16.0)
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[..., 3] = np.clip(coverage * 255, 0, 255).round().astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(path)


def not_a_digit_png(path: Path) -> None:
    rng = np.random.default_rng(9)
    coverage = ink((200, 200), hand(HOUSE, rng, 0.03, 0.0), (20, 20, 160, 160), 7.0)
    pixels = 250.0 * (1 - coverage) + 20.0 * coverage
    Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "L").save(path)


EXAMPLES = {
    "digit.png": digit_png,
    "photo.jpg": photo_jpg,
    "canvas.png": canvas_png,
    "not-a-digit.png": not_a_digit_png,
}


def main(folder: Path = HERE) -> None:
    for name, make in EXAMPLES.items():
        make(folder / name)


if __name__ == "__main__":
    main()
