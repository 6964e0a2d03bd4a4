"""The fast preprocessing paths give the answers of the slow, obvious code they replaced."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.decoding import decode_gray, decode_grayscale
from service.quantiles import histogram_median_deviation, histogram_percentiles
from service.resampling import resize_lanczos
from tests.service.images import draw_digit, encode

FORMATS = frozenset({"PNG", "JPEG"})


@pytest.mark.parametrize(
    ("height", "width", "out_h", "out_w"),
    [(30, 30, 20, 20), (256, 200, 20, 16), (17, 40, 9, 20), (5, 5, 12, 12), (3, 60, 1, 20)],
)
def test_matrix_lanczos_matches_pillow(height: int, width: int, out_h: int, out_w: int) -> None:
    image = np.random.default_rng(height).random((height, width), dtype=np.float32) * 255
    pillow = Image.fromarray(image, mode="F").resize((out_w, out_h), Image.Resampling.LANCZOS)
    ours = resize_lanczos(image, out_w, out_h)
    assert ours.shape == (out_h, out_w) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, np.asarray(pillow), atol=1e-3)


@pytest.mark.parametrize("size", [1, 2, 7, 784, 65536])
def test_histogram_statistics_match_numpy(size: int) -> None:
    pixels = np.random.default_rng(size).integers(0, 256, size).astype(np.uint8)
    pixels[: size // 2] = 250  # a dominant background, as on paper
    histogram = np.bincount(pixels, minlength=256).astype(np.float64)
    qs = (0.1, 50.0, 90.0, 99.9)
    np.testing.assert_allclose(histogram_percentiles(histogram, qs), np.percentile(pixels, qs))
    centre = float(np.median(pixels))
    expected = float(np.median(np.abs(pixels.astype(np.float64) - centre)))
    assert histogram_median_deviation(histogram, centre) == pytest.approx(expected)


def test_eight_bit_decode_is_the_float_decode_without_the_copy() -> None:
    for image in (draw_digit(), draw_digit().convert("RGB")):
        data = encode(image, "PNG")
        fast = decode_gray(data, FORMATS, 10**7)
        assert fast.dtype == np.uint8
        np.testing.assert_array_equal(fast, decode_grayscale(data, FORMATS, 10**7))


def test_exif_orientation_in_a_png_is_still_applied() -> None:
    stored = draw_digit((120, 80)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 8
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif.tobytes())
    assert decode_gray(buffer.getvalue(), FORMATS, 10**7).shape == (80, 120)  # upright again


def test_jpeg_draft_never_goes_below_the_work_side() -> None:
    from service.preprocessing import WORK_SIDE

    photo = draw_digit((1100, 700)).convert("RGB")
    decoded = decode_gray(encode(photo, "JPEG", quality=90), FORMATS, 10**7)
    assert min(decoded.shape) >= WORK_SIDE and max(decoded.shape) < 1100
