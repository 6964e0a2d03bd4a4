"""The fast preprocessing paths give the answers of the slow, obvious code they replaced."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import ImageTooLarge, InvalidImage
from service.imaging.decode import (
    decode_gray,
    decode_plain_png,
    decode_plain_webp,
    open_image,
    to_grayscale,
)
from service.imaging.histograms import PixelHistogram, PixelHistograms
from service.imaging.measurement import measure
from service.imaging.resampling import WORK_SIDE, resize_lanczos
from tests.service.images import draw_digit, encode

FORMATS = frozenset({"PNG", "JPEG"})


def decode_grayscale(data: bytes, allowed_formats: frozenset[str], max_pixels: int) -> np.ndarray:
    """The reference the fast 8-bit decode replaced: Pillow, then float32 luminance."""
    return to_grayscale(open_image(data, allowed_formats, max_pixels))


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
    histogram = PixelHistogram(np.bincount(pixels, minlength=256))
    qs = (0.1, 50.0, 90.0, 99.9)
    np.testing.assert_allclose(histogram.percentiles(qs), np.percentile(pixels, qs))
    centre = float(np.median(pixels))
    expected = float(np.median(np.abs(pixels.astype(np.float64) - centre)))
    assert histogram.median_deviation(centre) == pytest.approx(expected)
    assert histogram.brightest() == pixels.max()
    inverted = histogram.reversed()
    np.testing.assert_allclose(inverted.percentiles(qs), np.percentile(255 - pixels, qs))
    for centre in (0.0, 24.5, 250.0, 251.5, 255.0):
        darker, brighter = histogram.standing_out(centre, 24.0)
        assert (darker, brighter) == ((pixels < centre - 24).sum(), (pixels > centre + 24).sum())
    for cut in (-3.0, 0.0, 99.5, 249.0, 250.0, 300.0):
        above = pixels[pixels > cut]
        assert histogram.count_above(cut) == above.size
        if above.size:
            np.testing.assert_allclose(
                histogram.percentiles((10.0, 90.0), above=cut), np.percentile(above, (10, 90))
            )


def _random_counts(rng: np.random.Generator, rows: int, size: int) -> np.ndarray:
    """Histograms of ``rows`` random images of ``size`` pixels, half with a dominant level."""
    counts = []
    for _ in range(rows):
        pixels = rng.integers(0, 256, size)
        if rng.random() < 0.5:
            pixels[: size // 2] = rng.integers(0, 256)
        counts.append(np.bincount(pixels, minlength=256))
    return np.stack(counts)


@pytest.mark.parametrize("size", [1, 2, 7, 784, 65536])
def test_histogram_rows_give_each_rows_own_statistics_bit_for_bit(size: int) -> None:
    rng = np.random.default_rng(size)
    counts = _random_counts(rng, 24, size)
    rows = PixelHistograms(counts)
    alone = [PixelHistogram(row) for row in counts]
    qs = (0.1, 50.0, 90.0, 99.9)
    flip = rng.random(len(counts)) < 0.5
    flipped = rows.reversed_where(flip)
    medians = rows.percentiles((50.0,))[:, 0]  # whole or half levels, as medians of pixels are
    cuts = rng.uniform(-5.0, 300.0, len(counts))
    inked = rows.count_above(cuts) > 0
    above = rows.percentiles((90.0,), above=np.where(inked, cuts, -1.0))[:, 0]
    for i, histogram in enumerate(alone):
        assert rows.percentiles(qs)[i].tolist() == histogram.percentiles(qs)
        reference = histogram.reversed() if flip[i] else histogram
        assert flipped.percentiles(qs)[i].tolist() == reference.percentiles(qs)
        assert rows.median_deviation(medians)[i] == histogram.median_deviation(medians[i])
        assert rows.brightest()[i] == histogram.brightest()
        assert rows.count_above(cuts)[i] == histogram.count_above(cuts[i])
        darker, brighter = rows.standing_out(medians, 24.0)
        assert (darker[i], brighter[i]) == histogram.standing_out(medians[i], 24.0)
        if inked[i]:
            assert above[i] == histogram.percentiles((90.0,), above=cuts[i])[0]


def _work_images() -> list[np.ndarray]:
    """8-bit images of every kind the normaliser meets: canvases both ways round, a blank,
    noisy and unevenly lit paper, and sizes from 28x28 to a reduced photo."""
    rng = np.random.default_rng(5)
    images = []
    for i in range(20):
        ink, paper = (0, 255) if i % 3 else (255, 0)
        image = np.asarray(draw_digit((28, 28), ink=ink, paper=paper, width=2 + i % 3))
        images.append(image)
    images.append(np.full((28, 28), 255, np.uint8))  # blank
    for side in (60, 90, 256):
        gradient = np.linspace(120, 230, side)[None, :] * np.ones((side, 1))
        noisy = gradient + rng.normal(0, 8, (side, side))
        digit = np.asarray(draw_digit((side, side), width=max(2, side // 12)), dtype=np.float64)
        images.append(np.clip(np.minimum(noisy, digit), 0, 255).astype(np.uint8))
    for ink, paper in ((0, 255), (255, 0)):  # a digit small on a page: under 0.1 % ink
        page = Image.new("L", (256, 192), paper)
        page.paste(draw_digit((10, 10), ink=ink, paper=paper, width=1), (150, 60))
        images.append(np.asarray(page))
    return images


@pytest.mark.parametrize("same_size", [True, False])
def test_a_batch_measured_together_gets_each_images_own_measurement(same_size: bool) -> None:
    images = _work_images()
    batch = [image for image in images if image.shape == (28, 28)] if same_size else images
    assert len(batch) >= 16  # large enough to be measured in rows
    for image, together in zip(batch, measure(batch), strict=True):
        (alone,) = measure([image])
        assert together[:3] == alone[:3]  # background, inverted, paper
        if alone.lut is None:
            assert together.lut is None
        else:
            assert together.lut is not None
            np.testing.assert_array_equal(together.lut, alone.lut)
    assert any(m.inverted for m in measure(batch)) and not all(m.inverted for m in measure(batch))
    assert any(m.lut is None for m in measure(batch))  # the blank one
    if not same_size:
        small_black, small_white = measure(batch)[-2:]
        assert small_black.inverted and not small_white.inverted
        assert small_black.lut is not None and small_white.lut is not None


def _noise(mode: str, side: int = 40) -> Image.Image:
    bands = len(mode)
    pixels = np.random.default_rng(bands).integers(0, 256, (side, side, bands), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(axis=2) if bands == 1 else pixels, mode=mode)


def test_eight_bit_decode_is_the_float_decode_without_the_copy() -> None:
    for data in (encode(draw_digit(), "PNG"), encode(draw_digit().convert("RGB"), "JPEG")):
        fast = decode_gray(data, FORMATS, 10**7)
        assert fast.dtype == np.uint8
        np.testing.assert_array_equal(fast, decode_grayscale(data, FORMATS, 10**7))


@pytest.mark.parametrize(("mode", "interlace"), [("L", 0), ("L", 1), ("RGB", 0), ("RGBA", 0)])
def test_opencv_reads_plain_pngs_as_pillow_does(mode: str, interlace: int) -> None:
    """Gray bit for bit; colour within one level (OpenCV rounds ITU-R 601 its own way)."""
    image = _noise(mode)
    if mode == "RGBA":  # a canvas: opaque strokes on transparent paper, and a half-clear edge
        alpha = np.zeros((40, 40), dtype=np.uint8)
        alpha[10:30, 15:20], alpha[10:30, 20] = 255, 128
        image.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", interlace=interlace)
    data = buffer.getvalue()
    assert decode_plain_png(data, 10**7) is not None  # the fast path took it
    fast = decode_gray(data, FORMATS, 10**7)
    pillow = decode_grayscale(data, FORMATS, 10**7)
    tolerance = 0 if mode == "L" else 1
    np.testing.assert_allclose(fast, pillow, rtol=0, atol=tolerance)


@pytest.mark.parametrize(
    "image",
    [
        _noise("L").convert("P"),  # palette
        _noise("LA"),  # gray + alpha
        Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)),  # 16-bit
    ],
    ids=["palette", "gray-alpha", "16-bit"],
)
def test_unusual_pngs_are_left_to_pillow(image: Image.Image) -> None:
    data = encode(image, "PNG")
    assert decode_plain_png(data, 10**7) is None
    np.testing.assert_array_equal(
        decode_gray(data, FORMATS, 10**7), decode_grayscale(data, FORMATS, 10**7)
    )


WEBP = frozenset({"WEBP"})


@pytest.mark.parametrize("lossless", [True, False], ids=["lossless", "lossy"])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_opencv_reads_still_webps_as_pillow_does(mode: str, lossless: bool) -> None:
    """Pillow's WebP decoder kept a second canvas of the image's size (300 MB at the pixel
    limit); OpenCV's decodes into one array, the same pixels within one level of luminance."""
    image = _noise(mode)
    if mode == "RGBA":
        alpha = np.zeros((40, 40), dtype=np.uint8)
        alpha[10:30, 15:20], alpha[10:30, 20] = 255, 128
        image.putalpha(Image.fromarray(alpha))
    data = encode(image, "WEBP", lossless=lossless, quality=90)
    assert decode_plain_webp(data, WEBP, 10**7) is not None  # the fast path took it
    np.testing.assert_allclose(
        decode_gray(data, WEBP, 10**7), decode_grayscale(data, WEBP, 10**7), rtol=0, atol=1
    )


def test_animated_or_turned_webps_are_left_to_pillow() -> None:
    frames = [_noise("RGB"), _noise("RGB").transpose(Image.Transpose.ROTATE_90)]
    animated = io.BytesIO()
    frames[0].save(animated, "WEBP", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned
    turned = encode(_noise("RGB"), "WEBP", exif=exif.tobytes())
    for data in (animated.getvalue(), turned):
        assert decode_plain_webp(data, WEBP, 10**7) is None


def test_a_webp_over_the_pixel_limit_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge):
        decode_gray(encode(_noise("RGB"), "WEBP"), WEBP, 40 * 40 - 1)


def test_a_transparency_key_is_left_to_pillow() -> None:
    buffer = io.BytesIO()
    _noise("L").save(buffer, format="PNG", transparency=0)
    assert decode_plain_png(buffer.getvalue(), 10**7) is None


def test_corrupt_png_data_gets_pillows_error() -> None:
    data = bytearray(encode(_noise("L"), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF  # the CRC no longer matches
    with pytest.raises(InvalidImage):
        decode_gray(bytes(data), FORMATS, 10**7)


def test_png_over_the_pixel_limit_is_refused_before_opencv_sees_it() -> None:
    data = encode(_noise("L"), "PNG")
    assert decode_plain_png(data, 40 * 40 - 1) is None
    with pytest.raises(ImageTooLarge):
        decode_gray(data, FORMATS, 40 * 40 - 1)


def test_exif_orientation_in_a_png_is_still_applied() -> None:
    stored = draw_digit((120, 80)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 8
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif.tobytes())
    assert decode_gray(buffer.getvalue(), FORMATS, 10**7).shape == (80, 120)  # upright again


def test_jpeg_draft_never_goes_below_the_work_side() -> None:
    photo = draw_digit((1100, 700)).convert("RGB")
    decoded = decode_gray(encode(photo, "JPEG", quality=90), FORMATS, 10**7)
    assert min(decoded.shape) >= WORK_SIDE and max(decoded.shape) < 1100
