"""Images as people send them, built in memory (no files in the repository)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]  # a 7 as a polyline in unit coordinates
ONE = [(0.5, 0.15), (0.5, 0.85)]
HAND_SHAKE = 9  # pixels a phone moves while its shutter is open, in a photo a few hundred wide


def draw_digit(
    size: tuple[int, int] = (200, 200),
    stroke: list[tuple[float, float]] = SEVEN,
    *,
    ink: int = 0,
    paper: int = 255,
    width: int = 14,
    offset: tuple[int, int] = (0, 0),
) -> Image.Image:
    """A grayscale image with one polyline digit: black on white by default."""
    image = Image.new("L", size, paper)
    w, h = size
    points = [(x * min(w, h) + offset[0], y * min(w, h) + offset[1]) for x, y in stroke]
    ImageDraw.Draw(image).line(points, fill=ink, width=width, joint="curve")
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    return encode(image, "PNG")


def mnist_like(digit: np.ndarray) -> bytes:
    """A 28x28 uint8 MNIST array (white on black) as a PNG, exactly those pixels."""
    return png(Image.fromarray(digit.astype(np.uint8), mode="L"))


def pixel_font_digit(digit: int) -> Image.Image:
    """A digit in Pillow's built-in bitmap font (6x11 pixels), black on a 12x15 sheet: a
    small image with hard pixel edges, as a pixel font or a tiny sensor makes it."""
    sheet = Image.new("L", (12, 15), 255)
    ImageDraw.Draw(sheet).text((3, 2), str(digit), fill=0, font=ImageFont.load_default_imagefont())
    return sheet


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Noise blurred to blobs about ``sigma`` pixels wide, standardised (mean 0, std 1): a
    board's smudges, or thresholded, the grains of chalk."""
    noise = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    blobs = np.asarray(noise.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)
    return (blobs - blobs.mean()) / (blobs.std() + 1e-6)


def shaken(image: Image.Image, degrees: float, pixels: int = HAND_SHAKE) -> Image.Image:
    """The image as a camera sees it when it moves ``pixels`` along ``degrees`` (from level)
    while its shutter is open: each point smeared into a line that long."""
    kernel = np.zeros((pixels, pixels), np.float32)
    kernel[pixels // 2] = 1
    centre = ((pixels - 1) / 2, (pixels - 1) / 2)
    turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    kernel = cv2.warpAffine(kernel, turn, (pixels, pixels))
    smeared = cv2.filter2D(
        np.asarray(image), -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE
    )
    return Image.fromarray(smeared)
