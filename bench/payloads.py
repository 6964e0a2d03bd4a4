"""Request bodies of the benchmark, made deterministically (fixed seed) on every run.

Images are drawn the way people send them (dark ink on light paper), not MNIST-ready, so the
service's whole normalisation runs; the photo is large, noisy, tinted and JPEG-compressed.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BOUNDARY = "benchboundary7d1f0c"
PHOTO_SIDE = 600
PNG_SIDE = 28
V2_IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class Payload:
    """One request body with its content type and the number of images it carries."""

    body: bytes
    content_type: str | None
    images: int
    headers: tuple[tuple[str, str], ...] = ()


def _seven(side: int, width: int) -> Image.Image:
    """A hand-drawn-looking 7: dark strokes on a white canvas."""
    canvas = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(canvas)
    s = side / 28
    draw.line([(7 * s, 6 * s), (21 * s, 6 * s), (12 * s, 23 * s)], fill=0, width=width)
    draw.line([(10 * s, 15 * s), (18 * s, 15 * s)], fill=0, width=width)
    return canvas


def digit_png() -> bytes:
    """A 28x28 black-on-white PNG, as a drawing canvas sends it."""
    buffer = io.BytesIO()
    _seven(PNG_SIDE, 3).save(buffer, format="PNG")
    return buffer.getvalue()


def photo_jpeg(seed: int = 0) -> bytes:
    """A 600x600 'phone photo' of a digit: tinted paper, lighting gradient, noise, blur."""
    rng = np.random.default_rng(seed)
    ink = np.asarray(_seven(PHOTO_SIDE, 38).filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    ramp = np.linspace(0.85, 1.0, PHOTO_SIDE, dtype=np.float32)
    light = np.outer(ramp, ramp[::-1])
    gray = ink / 255.0 * 200.0 * light + 30.0
    noise = rng.normal(0.0, 6.0, size=(PHOTO_SIDE, PHOTO_SIDE))
    tint = np.array([1.0, 0.96, 0.88], dtype=np.float32)  # warm paper
    rgb = np.clip((gray + noise)[..., None] * tint, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def multipart(field: str, files: list[tuple[str, bytes, str]]) -> Payload:
    """A multipart/form-data body with one part per file, all under the same field name."""
    parts = []
    for name, data, media_type in files:
        parts.append(
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: {media_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return Payload(body, f"multipart/form-data; boundary={BOUNDARY}", len(files))


def v2_json(batch: int, seed: int = 0) -> Payload:
    """A V2 infer request with ``batch`` FP32 images in JSON ``data``, as KServe's SDK and
    tritonclient without binary data send it (float32 values written as doubles)."""
    rng = np.random.default_rng(seed)
    images = rng.random((batch, *V2_IMAGE_SHAPE), dtype=np.float32)
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [batch, *V2_IMAGE_SHAPE],
                    "data": images.reshape(-1).tolist(),
                }
            ]
        }
    ).encode()
    return Payload(body, "application/json", batch)


def v2_binary(batch: int, seed: int = 0) -> Payload:
    """A V2 infer request with ``batch`` FP32 images in the binary tensor data extension."""
    rng = np.random.default_rng(seed)
    images = rng.random((batch, *V2_IMAGE_SHAPE), dtype=np.float32)
    raw = images.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [batch, *V2_IMAGE_SHAPE],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return Payload(
        header + raw,
        "application/octet-stream",
        batch,
        (("Inference-Header-Content-Length", str(len(header))),),
    )
