"""The two resizes of the pipeline: an 8-bit image shrunk by area averaging (``shrink_to``),
and the ink's final fit by Pillow's antialiased Lanczos, as two small matrix products.

``Image.fromarray(a, "F").resize(size, LANCZOS)`` on a digit-sized image is nearly all Python
and mode plumbing, with the GIL held. The filter is separable and linear, so the
same result is ``rows @ image @ cols.T`` with Pillow's own coefficients (same support, same
centre rounding, same normalisation; Resample.c ``precompute_coeffs``). The coefficient
matrices depend only on the sizes, so they are cached; the products run in BLAS without the
GIL. Results match Pillow's float resize to float32 rounding.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

WORK_SIDE = 256  # images are reduced to this longer side first: plenty for a 20-pixel target
LANCZOS_SUPPORT = 3.0
_CACHE_SIZE = 1024  # distinct (input, output) side pairs kept; each matrix is a few KB


def _lanczos(x: np.ndarray) -> np.ndarray:
    inside = (x >= -LANCZOS_SUPPORT) & (x < LANCZOS_SUPPORT)
    return np.where(inside, np.sinc(x) * np.sinc(x / LANCZOS_SUPPORT), 0.0)


@lru_cache(maxsize=_CACHE_SIZE)
def lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 weights: output pixel i = sum_j w[i, j] * input pixel j."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filter_scale
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        centre = (out + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)  # C's (int) truncation, as Pillow rounds
        high = min(int(centre + support + 0.5), in_size)
        taps = _lanczos((np.arange(low, high) - centre + 0.5) / filter_scale)
        total = float(taps.sum())
        weights[out, low:high] = taps / total if total != 0.0 else taps
    matrix = weights.astype(np.float32)
    matrix.flags.writeable = False  # shared by every caller through the cache
    return matrix


def resize_lanczos(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 (H, W) -> float32 (height, width), Pillow LANCZOS semantics, no clipping."""
    source = np.asarray(image, dtype=np.float32)
    if source.shape == (height, width):
        return source.copy()  # Pillow returns a copy for an unchanged size
    rows = lanczos_matrix(source.shape[0], height)
    cols = lanczos_matrix(source.shape[1], width)
    return rows @ source @ cols.T


def shrink_to(pixels: np.ndarray, side: int) -> np.ndarray:
    """``pixels`` (H, W) or (H, W, C) reduced so that the longer side is at most ``side``;
    ``pixels`` itself when it already is. Area averaging: antialiased, cheaper than Pillow's
    8-bit Lanczos, without the GIL; only the fit at the end needs Lanczos's sharpness."""
    height, width = pixels.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
