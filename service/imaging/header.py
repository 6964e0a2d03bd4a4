"""What an image's header says, read before a single pixel is decoded: an allowed format and
a size within the limit, so a few-KB decompression bomb, or an image past its request's pixel
budget (batch.py), costs nothing."""

from __future__ import annotations

import io
import re
from collections.abc import Collection

from PIL import Image, UnidentifiedImageError

from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType

MAX_MESSAGE = 160  # characters of a decoder's own error passed on to the client


def read_header(data: bytes, allowed_formats: Collection[str], max_pixels: int) -> Image.Image:
    """The image as its header describes it, not a pixel decoded: refused when its format is
    not allowed or it is over ``max_pixels``, so a few-KB bomb costs nothing."""
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    allowed = sorted(allowed_formats)
    try:
        image = Image.open(io.BytesIO(data), formats=allowed)
    except Image.DecompressionBombError as exc:  # over Pillow's own, far higher limit
        raise ImageTooLarge(f"{_bomb_size(exc)}; the limit is {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        other = _identify_elsewhere(data) or _named_by_signature(data)
        if other:
            raise UnsupportedMediaType(
                f"image format {other} is not accepted; send one of {', '.join(allowed)}"
            ) from exc
        raise InvalidImage(
            f"cannot identify an image in {len(data)} bytes; send one of {', '.join(allowed)}"
        ) from exc
    except Exception as exc:
        raise InvalidImage(f"cannot read the image header: {exc}"[:MAX_MESSAGE]) from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels"
        )
    return image


def _bomb_size(error: Image.DecompressionBombError) -> str:
    """The image's size as Pillow's refusal gives it (a count, no sides), without Pillow's
    limit, which is not the service's."""
    match = re.search(r"\((\d+) pixels\)", str(error))
    return f"image is {match.group(1)} pixels" if match else "image is too large"


def _identify_elsewhere(data: bytes) -> str | None:
    """The format name of an image Pillow knows but we do not allow (header only)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # anything unreadable is simply not an image
        return None


# ISO base media files (HEIF, AVIF) name their kind in the "ftyp" box's brand, bytes 8-12.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_SNIFFED_BYTES = 1024  # where an SVG's root element is found, after its XML declaration


def _named_by_signature(data: bytes) -> str | None:
    """A format Pillow cannot open at all, named by its first bytes, so its sender learns what
    was sent (an iPhone's photo is HEIC by default) instead of "cannot identify an image"."""
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIC/HEIF (an iPhone's photo format)"
        if brand in _AVIF_BRANDS:
            return "AVIF"
    head = data[:_SNIFFED_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head.startswith(b"<") and b"<svg" in head.lower():
        return "SVG"
    return None
