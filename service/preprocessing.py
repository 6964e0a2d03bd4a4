"""Turn what people send into what LeNet-5 was trained on (docs/design.md section 1).

MNIST convention: white ink on black, 0..1, the ink fitted into a 20x20 box with its aspect
kept, placed in 28x28 so that its centre of mass sits at pixel (14, 14). Real images are black
ink on light, tinted, noisy paper, of any size and anywhere in the frame, so the steps are:
polarity from the border, background and noise floor removal, specks dropped by connected
components, crop, fit, centre.
"""

from __future__ import annotations

import io
from collections.abc import Collection

import numpy as np
from PIL import Image
from scipy import ndimage

from service.decoding import decode_grayscale
from service.errors import NoInk
from service.quantiles import median, percentiles

SIZE = 28  # model input side
BOX = 20  # MNIST fits the ink into a 20x20 box...
CENTRE = 14.0  # ...and puts its centre of mass here (measured on MNIST test: 13.99, 14.01)
WORK_SIDE = 256  # larger images are reduced first: plenty for a 20-pixel target, and cheap
MIN_CONTRAST = 24.0  # ink must differ from the background by this much (of 255) to exist
NOISE_SIGMAS = 3.0  # background noise floor, in robust standard deviations of the border
STRONG = 0.5  # "certainly ink": half the ink level above the floor
WEAK = 0.04  # faint anti-aliased edges are kept when they touch certain ink
SPECK_FRACTION = 0.08  # ink components smaller than this share of the largest are specks
BOX_LEVEL = 0.3  # pixels at least this inked define the 20x20 box
MARGIN = 3  # output pixels of faint halo kept around the box
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def preprocess_image(
    data: bytes, *, allowed_formats: Collection[str], max_pixels: int
) -> np.ndarray:
    """Image bytes -> float32 (28, 28) in MNIST convention; typed ServiceErrors for bad input."""
    return normalize_digit(decode_grayscale(data, allowed_formats, max_pixels))


def encode_png(image: np.ndarray) -> bytes:
    """A (28, 28) 0..1 array as an 8-bit grayscale PNG (what the model saw, for humans)."""
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _border(gray: np.ndarray) -> np.ndarray:
    width = max(1, round(0.04 * min(gray.shape)))
    return np.concatenate(
        [
            gray[:width].ravel(),
            gray[-width:].ravel(),
            gray[width:-width, :width].ravel(),
            gray[width:-width, -width:].ravel(),
        ]
    )


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    total = float(image.sum())
    rows = np.arange(image.shape[0], dtype=np.float64)
    cols = np.arange(image.shape[1], dtype=np.float64)
    return (
        float(image.sum(axis=1) @ rows) / total,
        float(image.sum(axis=0) @ cols) / total,
    )


def _already_mnist(gray: np.ndarray) -> np.ndarray | None:
    """A 28x28 image on a dark background that is centred like MNIST passes untouched, so the
    service answers exactly what offline evaluation of the same pixels answers."""
    if gray.shape != (SIZE, SIZE) or median(_border(gray)) > 64.0:
        return None
    image = gray / 255.0
    if float(image.max()) < MIN_CONTRAST / 255.0:
        return None
    rows, cols = np.nonzero(image > 0.0)
    if np.ptp(rows) + 1 > BOX + 2 or np.ptp(cols) + 1 > BOX + 2:
        return None
    cy, cx = _centre_of_mass(image)
    if abs(cy - CENTRE) > 1.5 or abs(cx - CENTRE) > 1.5:
        return None
    return image.astype(np.float32)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.LANCZOS
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, None)


def _reduce(gray: np.ndarray) -> np.ndarray:
    height, width = gray.shape
    scale = WORK_SIDE / max(height, width)
    if scale >= 1.0:
        return gray
    return _resize(gray, max(1, round(width * scale)), max(1, round(height * scale)))


def _ink_up(gray: np.ndarray) -> np.ndarray:
    """Make the ink the bright side: whichever extreme lies farther from the background."""
    background = median(_border(gray))
    low, high = percentiles(gray, (0.1, 99.9))
    return 255.0 - gray if background - low > high - background else gray


def _stretch(ink_up: np.ndarray) -> np.ndarray:
    """Background and its noise to 0, ink to 1: removes paper tint and JPEG noise."""
    border = _border(ink_up)
    background = median(border)
    sigma = 1.4826 * median(np.abs(border - background))
    floor = background + NOISE_SIGMAS * sigma
    (peak,) = percentiles(ink_up, (99.9,))
    if peak - floor < MIN_CONTRAST and float(ink_up.max()) - floor < MIN_CONTRAST:
        raise NoInk("no ink found: the image is blank or has too little contrast")
    top = ink_up[ink_up > floor + 0.5 * (float(ink_up.max()) - floor)]
    level = percentiles(top, (90,))[0] if top.size else float(ink_up.max())
    return np.clip((ink_up - floor) / max(level - floor, 1.0), 0.0, 1.0)


def _keep_strokes(ink: np.ndarray) -> np.ndarray:
    """Drop specks and stray shading: keep faint pixels only where they touch real strokes."""
    strong, count = ndimage.label(ink >= STRONG, structure=_EIGHT_CONNECTED)
    if count == 0:
        raise NoInk("no ink found: nothing stands out from the background")
    areas = np.bincount(strong.ravel())[1:]
    kept = np.flatnonzero(areas >= SPECK_FRACTION * areas.max()) + 1
    # Label lookup tables instead of np.isin/np.unique: same masks, a tenth of the cost.
    keep_strong = np.zeros(count + 1, dtype=bool)
    keep_strong[kept] = True
    strokes = keep_strong[strong]
    weak, weak_count = ndimage.label(ink > WEAK, structure=_EIGHT_CONNECTED)
    touching = np.zeros(weak_count + 1, dtype=bool)
    touching[weak[strokes]] = True
    touching[0] = False
    return np.where(touching[weak], ink, 0.0)


def _fit_and_centre(ink: np.ndarray) -> np.ndarray:
    """Scale the ink's box to 20 pixels, then place the centre of mass at (14, 14).

    The box is measured on clearly inked pixels (faint anti-aliasing halos would make every
    digit a little smaller than MNIST's), but the halo itself is kept: a margin around the box
    is resized with it.
    """
    rows = np.flatnonzero((ink >= BOX_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink >= BOX_LEVEL).any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    scale = BOX / max(height, width)
    margin = int(np.ceil(MARGIN / scale))
    top, left = max(rows[0] - margin, 0), max(cols[0] - margin, 0)
    region = ink[top : rows[-1] + 1 + margin, left : cols[-1] + 1 + margin]
    fitted = _resize(
        region,
        max(1, round(region.shape[1] * scale)),
        max(1, round(region.shape[0] * scale)),
    )
    peak = float(fitted.max())
    if peak <= 0.0:
        raise NoInk("no ink found after resizing")
    fitted = np.clip(fitted / peak, 0.0, 1.0)
    cy, cx = _centre_of_mass(fitted)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    dy, dx = round(CENTRE - cy), round(CENTRE - cx)
    # Paste with clipping: the halo may reach past the 28x28 edge, the ink does not.
    y0, x0 = max(dy, 0), max(dx, 0)
    y1 = min(dy + fitted.shape[0], SIZE)
    x1 = min(dx + fitted.shape[1], SIZE)
    canvas[y0:y1, x0:x1] = fitted[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
    return canvas


def normalize_digit(gray: np.ndarray) -> np.ndarray:
    """Grayscale float32 (H, W) 0..255, any polarity -> float32 (28, 28) MNIST convention."""
    passthrough = _already_mnist(gray)
    if passthrough is not None:
        return passthrough
    ink = _keep_strokes(_stretch(_ink_up(_reduce(gray))))
    return _fit_and_centre(ink)
