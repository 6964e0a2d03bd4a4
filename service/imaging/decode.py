"""Image bytes -> one grayscale array (0..255), refusing what must not be decoded: uint8 where
the image is 8-bit and opaque, float32 otherwise (more bits, transparency flattened).

Limits come first: the format allow-list and the pixel limit are checked from the header
(header.py), before a single pixel is decoded, so a few-KB decompression bomb costs nothing.

Plain 8-bit PNGs (gray, RGB, RGBA: what drawing canvases and scanners send) are decoded by
OpenCV, several times cheaper than Pillow on small images (docs/performance.md), because
decoding runs once per image on the request path. Which PNGs qualify is read from the chunk
list: anything unusual (16-bit, palette, transparency chunk, EXIF, a truncated or broken file)
goes to Pillow, whose errors and orientation handling stay the reference.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Collection

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

from service.errors import InvalidImage, ServiceError
from service.imaging.alpha import OPAQUE, flatten_alpha, luminance_and_alpha
from service.imaging.header import MAX_MESSAGE, read_header
from service.imaging.measurement import MIN_INK_PIXELS
from service.imaging.resampling import WORK_SIDE
from service.imaging.segments import (
    MAX_JPEG_SCANS,
    MAX_SEGMENTS,
    PNG_SIGNATURE,
    jpeg_scans,
    png_chunk_kinds,
    segment_count,
)

logger = logging.getLogger("service.imaging")

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_CHUNK = struct.Struct(">I4s")  # length, type; then the data and a 4-byte CRC
_IHDR = struct.Struct(">IIBBBBB")  # width, height, bit depth, colour type, methods, interlace
_PNG_GRAY, _PNG_RGB, _PNG_RGBA = 0, 2, 6  # colour types OpenCV reads as Pillow does
_LIBPNG_SIDE_LIMIT = 1_000_000  # libpng's default user limit on a side (a 1x40,000,000 strip)
_PNG_READ_AS = {
    _PNG_GRAY: cv2.IMREAD_GRAYSCALE,
    _PNG_RGB: cv2.IMREAD_COLOR,
    _PNG_RGBA: cv2.IMREAD_UNCHANGED,
}
_VP8X_FLAGS = 20  # the byte of a VP8X chunk's flags in the file
_VP8X_NOT_PLAIN = 0x02 | 0x08  # animation, EXIF (an orientation): Pillow reads those
_PNG_PILLOW_ONLY = frozenset({b"tRNS", b"eXIf", b"acTL"})  # transparency key, orientation, frames


def open_image(
    data: bytes, allowed_formats: Collection[str], max_pixels: int, *, colour: bool = False
) -> Image.Image:
    """Decode the first frame of an allowed image no larger than ``max_pixels``; a JPEG as
    luminance only, unless ``colour`` is asked for."""
    image = read_header(data, allowed_formats, max_pixels)
    if (with_alpha := _bmp_alpha(image, data)) is not None:
        return with_alpha  # a BMP has no orientation to apply
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free: asked for the side the pipeline
    # reduces every image to anyway (WORK_SIDE), Pillow's draft never goes below it.
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        image.draft(image.mode if colour else "L", (WORK_SIDE, WORK_SIDE))
    try:
        image.load()
    except Exception as exc:  # truncated or corrupt data: every Pillow plugin raises its own
        raise InvalidImage(
            f"cannot decode the {image.format} image (truncated or corrupt): {exc}"[:MAX_MESSAGE]
        ) from exc
    return _upright(image)


def _bmp_alpha(image: Image.Image, data: bytes) -> Image.Image | None:
    """A 32-bit BMP whose fourth byte makes more than a speck of pixels opaque, read as RGBA;
    None for any other file. Pillow reads that byte as padding, yet writes an RGBA image's
    alpha there (a canvas's drawing saved as BMP lost its ink: no_ink)."""
    if not isinstance(image, ImageFile.ImageFile) or image.format != "BMP":
        return None
    if len(image.tile) != 1:
        return None
    codec, _, offset, args = image.tile[0]
    if codec != "raw" or not isinstance(args, tuple) or args[0] != "BGRX":
        return None
    stride, orientation = args[1], args[2]
    size = stride * image.height
    if len(data) < offset + size:
        return None  # cut short: Pillow says how
    fourth = np.frombuffer(data, np.uint8, count=size, offset=offset)[3::4]
    if np.count_nonzero(fourth == OPAQUE) < MIN_INK_PIXELS:
        return None  # padding (zeros, or stray bytes): too few opaque pixels for a drawing
    pixels = data[offset : offset + size]
    return Image.frombuffer("RGBA", image.size, pixels, "raw", "BGRA", stride, orientation)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos); a broken EXIF block is ignored, not fatal.

    Only TIFF keeps orientation outside an EXIF block; for the others, no ``exif`` in the
    info (filled while reading the header and, for PNG, the chunks after the pixels) means
    no orientation, and the EXIF parse is skipped.
    """
    if image.format != "TIFF" and "exif" not in image.info:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        logger.debug("ignoring unreadable EXIF orientation", exc_info=True)
        return image


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Luminance 0..255 as float32 (H, W), whatever the mode, with alpha flattened."""
    if image.mode == "P":
        palette = image.palette
        has_alpha = "transparency" in image.info or (palette is not None and palette.mode == "RGBA")
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.mode in _ALPHA_MODES:
        return flatten_alpha(*luminance_and_alpha(image))
    if image.mode == "F":
        return _float_levels(np.asarray(image, dtype=np.float32))
    if image.mode in _WIDE_MODES:  # 16- and 32-bit integers
        wide = np.asarray(image, dtype=np.float32)
        return _by_bit_depth(wide, float(wide.max()) if wide.size else 0.0)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32)


def _float_levels(values: np.ndarray) -> np.ndarray:
    """A float image's levels on the 0..255 scale. Float images come in three conventions:
    0..1 (numpy, scikit-image, OpenCV's float images, a normalised MNIST array), signed
    (standardised, or -1..1), and 0..255 or wider. Unit floats are scaled by 255, so a faint
    one stays faint; signed ones are stretched from their own range, as the pipeline only
    compares levels with each other; wider ones are read as integers are; NaN or infinity is
    refused, as no level can stand for it."""
    if not np.isfinite(values).all():
        raise InvalidImage("the image's pixel values include NaN or infinity")
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if low < 0.0:
        stretched = (values.astype(np.float64) - low) * (255.0 / max(high - low, 1e-300))
        return stretched.astype(np.float32)  # in float64: the span may overflow float32
    if high <= 1.0:
        return values * np.float32(255.0)
    return _by_bit_depth(values, high)


def _by_bit_depth(values: np.ndarray, peak: float) -> np.ndarray:
    """Levels above 255 scaled by the bit depth they fit in (up to 255: 8-bit levels as they
    are). 10- and 12-bit sensor data often comes in 16-bit files, and read as 16-bit it is all
    but black (no_ink)."""
    if peak <= 255.0:
        return values
    return values * np.float32(255.0 / ((1 << math.ceil(peak).bit_length()) - 1))


def to_gray_pixels(image: Image.Image) -> np.ndarray:
    """Luminance 0..255 (H, W): uint8 for 8-bit images (nearly all), else float32."""
    if image.mode == "L":
        return np.asarray(image)
    if image.mode == "RGB":
        return np.asarray(image.convert("L"))
    return to_grayscale(image)


def _plain_png_colour(data: bytes, max_pixels: int) -> int | None:
    """The colour type of a well-formed 8-bit gray, RGB or RGBA PNG within ``max_pixels``
    that has no chunk only Pillow honours; None for anything else (Pillow decodes it)."""
    if not data.startswith(PNG_SIGNATURE) or len(data) < 8 + _CHUNK.size + _IHDR.size:
        return None
    length, kind = _CHUNK.unpack_from(data, 8)
    width, height, depth, colour, compression, filtering, interlace = _IHDR.unpack_from(data, 16)
    if kind != b"IHDR" or length != _IHDR.size or depth != 8 or colour not in _PNG_READ_AS:
        return None
    if compression or filtering or interlace > 1 or not 0 < width * height <= max_pixels:
        return None
    if max(width, height) > _LIBPNG_SIDE_LIMIT:  # libpng refuses it: no broken stream
        return None
    for kind in png_chunk_kinds(data):
        if kind in _PNG_PILLOW_ONLY:
            return None
        if kind == b"IEND":
            return colour
    return None  # truncated: Pillow says how


class BrokenPng(Exception):
    """libpng refused a plain PNG's image data."""


def decode_plain_png(data: bytes, max_pixels: int) -> np.ndarray | None:
    """Luminance (H, W) by OpenCV, with Pillow's ITU-R 601 weights: uint8, or float32 where
    transparency was flattened onto paper; None if not plain. Raises BrokenPng."""
    colour = _plain_png_colour(data, max_pixels)
    if colour is None:
        return None
    flags = _PNG_READ_AS[colour] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if pixels is None:
        raise BrokenPng
    return _luminance(pixels)


def decode_plain_webp(
    data: bytes, allowed_formats: Collection[str], max_pixels: int
) -> np.ndarray | None:
    """A still WebP without EXIF (no orientation to apply) decoded by OpenCV, as
    ``decode_plain_png``; None for any other file. Pillow's WebP decoder keeps a canvas of its
    own beside the image (at the pixel limit 300 MB: docs/performance.md, "A transparent
    drawing at the pixel limit"); libwebp under OpenCV decodes into the one array."""
    if "WEBP" not in allowed_formats or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    extended = chunk == b"VP8X" and len(data) > _VP8X_FLAGS
    still = extended and not (data[_VP8X_FLAGS] & _VP8X_NOT_PLAIN)
    if not (chunk in (b"VP8 ", b"VP8L") or still):
        return None
    read_header(data, allowed_formats, max_pixels)  # the size limit, before a pixel is decoded
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return None if pixels is None else _luminance(pixels)  # damaged: Pillow says how


def _luminance(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's gray, BGR or BGRA pixels as luminance, alpha flattened onto paper."""
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    luminance = cv2.cvtColor(pixels, cv2.COLOR_BGRA2GRAY)
    alpha = np.ascontiguousarray(pixels[..., 3])
    del pixels  # four bytes a pixel, not needed while the alpha is flattened
    if alpha.min() == OPAQUE:
        return luminance
    return flatten_alpha(luminance, alpha)


def decode_gray(data: bytes, allowed_formats: Collection[str], max_pixels: int) -> np.ndarray:
    """Bytes -> upright grayscale (H, W) 0..255, uint8 where the image is 8-bit and opaque
    (no float copy on the hot path), float32 otherwise; typed errors for bad input."""
    if segment_count(data) > MAX_SEGMENTS:
        raise InvalidImage(
            f"the file holds more than {MAX_SEGMENTS} metadata segments (PNG chunks, JPEG "
            "markers or GIF blocks) and no image needs as many: save the image again"
        )
    if (scans := jpeg_scans(data)) > MAX_JPEG_SCANS:
        raise InvalidImage(
            f"the JPEG holds {scans} scans, more than the {MAX_JPEG_SCANS} allowed (encoders "
            "write about ten, and each one is a pass over the whole image): save it again"
        )
    broken = False
    if "PNG" in allowed_formats:
        try:
            plain = decode_plain_png(data, max_pixels)
        except BrokenPng:
            broken = True  # Pillow names the problem, below
        else:
            if plain is not None:
                return plain
    if (webp := decode_plain_webp(data, allowed_formats, max_pixels)) is not None:
        return webp
    image = open_image(data, allowed_formats, max_pixels)
    try:
        pixels = to_gray_pixels(image)
    except ServiceError:
        raise
    except Exception as exc:
        raise InvalidImage(f"cannot convert the {image.mode} image: {exc}"[:MAX_MESSAGE]) from exc
    if broken:
        # libpng refused it where Pillow did not: a complete compressed stream of fewer rows
        # than the header says (Pillow fills the rest with black, and the digit's lower part
        # would be read as ink), a checksum that does not match, a chunk libpng will not read.
        raise InvalidImage(
            "the PNG's image data is broken (rows missing, a checksum that does not match, or "
            "a damaged chunk): save the image again"
        )
    return pixels
