"""Digits as a person draws them: strokes of points in pad coordinates (0..1, y down).

Each stroke is one press-move-release of the mouse. Shapes follow common handwriting, not
MNIST samples: a plain 1, a 7 with its bar, an oval 0, and so on.
"""

from __future__ import annotations

import math

Point = tuple[float, float]
Stroke = list[Point]


def arc(
    cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, steps: int = 24
) -> Stroke:
    """Points along an ellipse arc; angles in degrees, 0 = right, 90 = down (screen y)."""
    return [
        (
            cx + rx * math.cos(math.radians(start_deg + (end_deg - start_deg) * i / steps)),
            cy + ry * math.sin(math.radians(start_deg + (end_deg - start_deg) * i / steps)),
        )
        for i in range(steps + 1)
    ]


DIGITS: dict[int, list[Stroke]] = {
    0: [arc(0.5, 0.5, 0.22, 0.33, -90, 275)],
    1: [[(0.52, 0.16), (0.5, 0.5), (0.48, 0.84)]],
    2: [arc(0.5, 0.34, 0.2, 0.18, 190, 380, 16) + [(0.28, 0.82), (0.74, 0.82)]],
    3: [arc(0.48, 0.33, 0.2, 0.16, 200, 450, 16) + arc(0.48, 0.66, 0.22, 0.18, -90, 160, 16)],
    4: [[(0.58, 0.15), (0.26, 0.6), (0.76, 0.6)], [(0.6, 0.35), (0.6, 0.86)]],
    5: [
        [(0.7, 0.17), (0.34, 0.17), (0.31, 0.47)] + arc(0.5, 0.64, 0.22, 0.2, -130, 160, 16),
    ],
    6: [[(0.64, 0.16), (0.44, 0.36), (0.32, 0.6)] + arc(0.5, 0.66, 0.19, 0.18, 180, 540, 20)],
    7: [[(0.26, 0.2), (0.74, 0.2), (0.44, 0.85)]],
    8: [arc(0.5, 0.32, 0.16, 0.16, 90, 450, 20) + arc(0.5, 0.66, 0.2, 0.18, -90, 270, 20)],
    9: [arc(0.48, 0.34, 0.18, 0.17, 0, 360, 20) + [(0.66, 0.34), (0.62, 0.86)]],
}
