"""Uneven lighting (a shadow across a phone photo, vignetting) taken out of the paper, so that
one noise floor fits the whole image."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from service.imaging.histograms import median
from service.imaging.measurement import MAD_TO_SIGMA, MIN_CONTRAST, border_indices
from service.imaging.resampling import shrink_to

LIGHTING_SIDE = 64  # uneven lighting is estimated on a copy this small: it varies slowly
UNEVEN_SPREAD = 6.0  # border spread (robust sigma, of 255) above which lighting is looked at
UNEVEN_LEVELS = MIN_CONTRAST  # paper varying by more than this (of 255) gets its lighting removed
LIGHTING_FITS = 3  # fits of the lighting surface, each without the previous one's ink outliers
LIGHTING_OUTLIER_SIGMAS = 2.5  # border pixels this far above the fitted paper are ink
LIGHTING_MAX_RESIDUAL = 12.0  # paper fits its surface this well (robust sigma, of 255), or no fix


def flatten_lighting(ink: np.ndarray, border_sigma: float) -> np.ndarray:
    """Subtract the paper's own brightness where it varies; otherwise return ``ink`` as is.

    The lighting is a quadratic surface fitted to the border pixels, which are mostly paper;
    ink there (brighter than the paper, in this polarity) is dropped by refitting without the
    bright outliers. Only the border is used, so a digit's thick strokes are never taken for
    lighting; a border that no smooth surface fits (a digit filling the frame, its strokes
    running along the edges) is left alone. An evenly lit border (small spread), the common
    case, costs nothing more.
    """
    if border_sigma < UNEVEN_SPREAD:
        return ink
    small = shrink_to(ink, LIGHTING_SIDE)
    terms, edge = _lighting_grid(*small.shape)
    design, values = terms[edge], small.ravel()[edge].astype(np.float64)
    keep = np.ones(len(values), dtype=bool)
    for _ in range(LIGHTING_FITS):
        coefficients = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coefficients
        sigma = MAD_TO_SIGMA * median(np.abs(residual[keep])) + 1.0
        keep = residual < LIGHTING_OUTLIER_SIGMAS * sigma
        if keep.sum() < design.shape[1]:
            return ink
    surface = (terms @ coefficients).reshape(small.shape)
    if float(np.ptp(surface)) < UNEVEN_LEVELS or sigma > LIGHTING_MAX_RESIDUAL:
        return ink  # even after all, or the border is not smooth paper (ink runs along it)
    # 8-bit shading to subtract (saturating): lighting is smooth, half a level of rounding is
    # far below the noise floor.
    shading = np.clip(np.rint(surface - surface.min()), 0, 255).astype(np.uint8)
    if shading.shape != ink.shape:
        shading = cv2.resize(shading, ink.shape[::-1], interpolation=cv2.INTER_LINEAR)
    return cv2.subtract(ink, shading)


@functools.lru_cache(maxsize=64)
def _lighting_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H*W, 6) terms 1, x, y, x*x, x*y, y*y on -1..1 coordinates, row-major, and the flat
    indices of the border pixels (the border the statistics use). Cached: sizes repeat."""
    grid_y, grid_x = np.meshgrid(
        np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij"
    )
    xs, ys = grid_x.ravel(), grid_y.ravel()
    terms = np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=1)
    terms.flags.writeable = False
    # Each border pixel once, ascending (the statistics' order repeats the corners).
    return terms, np.unique(border_indices(height, width))
