"""A saliency map for people: the heat laid over what the model saw, as a 28x28 RGB PNG.

The input is dimmed to gray; pixels that support the answer turn red to yellow, pixels that
argue against it blue, each as strong as its share of the map's largest magnitude. Scaled per
map: the raw values (the probability drops) are in the answer beside it for programs.

The colours measure a drop in log-odds, not in probability: a sure, calibrated model (0.9999)
loses little probability to any one patch, and on a linear probability scale the one patch that
costs most left the rest of the ink behind the answer uncoloured. A drop ``h`` from the answer's
probability ``p`` is about log((1 - p + h) / (1 - p)) in log-odds; for an unsure answer this is
about proportional to ``h``, so only sure answers look different.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_DIM = 0.55  # the input's brightness under the heat
_MAX_ALPHA = 0.85
_WARM_LOW = np.array([200.0, 30.0, 30.0])  # weak support: red
_WARM_HIGH = np.array([255.0, 230.0, 40.0])  # strong support: yellow
_COLD = np.array([40.0, 120.0, 255.0])  # against the answer: blue
_MIN_REST = 1e-6  # a probability of 1 in float32: keeps the logarithm finite


def overlay_png(image: np.ndarray, heat: np.ndarray, probability: float = 0.0) -> bytes:
    """``heat`` (28, 28: drops of the answer's ``probability``) over ``image`` (28, 28, 0..1)
    as an 8-bit RGB PNG."""
    gray = np.clip(image, 0.0, 1.0)[..., None] * (255.0 * _DIM)
    rest = max(1.0 - probability, _MIN_REST)  # what the other classes hold
    heat = np.log(np.maximum(rest + heat, _MIN_REST) / rest)  # the drop in log-odds
    scale = float(np.abs(heat).max())
    strength = np.abs(heat) / scale if scale > 0 else np.zeros_like(heat)
    warm = _WARM_LOW + (_WARM_HIGH - _WARM_LOW) * strength[..., None]
    color = np.where((heat >= 0)[..., None], warm, _COLD)
    alpha = (strength * _MAX_ALPHA)[..., None]
    rgb = np.clip(np.rint(gray * (1.0 - alpha) + color * alpha), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()
