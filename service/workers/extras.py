"""What a frame carries besides its answers, only when its flags ask (both processes).

``WITH_PIXELS``: the reply adds, per image the model answered, the 28x28 input as 8-bit
pixels (784 bytes: what a correction stores; no PNG encoding on the answer's path).
``EXPLAIN``: the reply adds, per image, the saliency map of its predicted class (28x28
float32, zeros for an image with none) and its overlay PNG (empty for none). ``TRACED``: the
request ends with the request's W3C trace context (trace id, span id, flags: 25 bytes), and
the reply adds the worker's timings of the frame's batch (``time.monotonic``, the same clock
in every process of the machine), from which the server makes the worker's spans. A frame
without these flags is exactly what it was: nothing here runs for it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.contract import SIDE

WITH_IMAGE = 1  # request flag: also send back the 28x28 image the model saw, as a PNG
EXPLAIN = 2  # request flag: also send each answered image's saliency map and overlay
TRACED = 4  # request flag: the payload ends with a trace context; the reply adds timings
WITH_PIXELS = 8  # request flag: also send back the model's input as 8-bit pixels

TRACE_CONTEXT_SIZE = 25  # W3C binary: 16-byte trace id, 8-byte parent span id, 1 byte flags
PIXELS = SIDE * SIDE  # values of one 28x28 image: a map's floats, an image's bytes
# The worker's timings of a frame: preprocessing began, the model call began and ended, the
# frame's explanations began and ended (0.0 when it asked for none); the model call's size.
_TIMING = struct.Struct("<5dI")


@dataclass(frozen=True, slots=True)
class WorkerTiming:
    """When the server sent one frame and when the worker did what with it
    (``time.monotonic`` seconds)."""

    sent_at: float
    preprocess_start: float
    model_start: float
    model_end: float
    explain_start: float
    explain_end: float
    model_batch: int  # inputs in the model call


@dataclass(frozen=True, slots=True)
class Explanations:
    """The saliency maps of a frame's images and their overlays (empty: none for that image)."""

    maps: np.ndarray  # (count, 28, 28) float32
    overlays: list[bytes]


def split_trace(payload: bytes, flags: int) -> bytes | None:
    """The trace context at the end of a TRACED request's payload, else None."""
    return payload[-TRACE_CONTEXT_SIZE:] if flags & TRACED else None


def encode_explanations(explained: Explanations) -> bytes:
    """Overlay lengths (uint32 each), the maps (float32), then the overlays."""
    overlays = explained.overlays
    return b"".join(
        [
            struct.pack(f"<{len(overlays)}I", *map(len, overlays)),
            np.ascontiguousarray(explained.maps, np.float32).tobytes(),
            *overlays,
        ]
    )


def decode_explanations(payload: bytes, offset: int, count: int) -> tuple[Explanations, int]:
    """The explanations at ``offset`` and the offset after them."""
    lengths = struct.unpack_from(f"<{count}I", payload, offset)
    offset += 4 * count
    maps = np.frombuffer(payload, np.float32, count * PIXELS, offset).reshape(count, SIDE, SIDE)
    offset += maps.nbytes
    overlays = []
    for length in lengths:
        overlays.append(payload[offset : offset + length])
        offset += length
    return Explanations(maps, overlays), offset


def to_uint8(image: np.ndarray) -> bytes:
    """A (28, 28) 0..1 image as 784 bytes, rounded as the PNG of what the model saw is."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8).tobytes()


def encode_pixels(pixels: Sequence[bytes | None]) -> bytes:
    """One presence byte per image, then 784 bytes for each image that has pixels."""
    return bytes(value is not None for value in pixels) + b"".join(p for p in pixels if p)


def decode_pixels(payload: bytes, offset: int, count: int) -> tuple[list[bytes | None], int]:
    present = payload[offset : offset + count]
    offset += count
    pixels: list[bytes | None] = []
    for flag in present:
        if flag:
            pixels.append(payload[offset : offset + PIXELS])
            offset += PIXELS
        else:
            pixels.append(None)
    return pixels, offset


def encode_timing(timing: Sequence[float]) -> bytes:
    return _TIMING.pack(*timing)


def decode_timing(payload: bytes, offset: int, sent_at: float) -> WorkerTiming:
    return WorkerTiming(sent_at, *_TIMING.unpack_from(payload, offset))
