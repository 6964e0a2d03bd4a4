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
        other = _identify_elsewhere(data)
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
