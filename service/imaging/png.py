"""What the model saw, for humans: the 28x28 input as an 8-bit grayscale PNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_png(image: np.ndarray) -> bytes:
    """A (28, 28) 0..1 array as an 8-bit grayscale PNG."""
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
