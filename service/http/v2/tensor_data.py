"""The values of the model's FP32 input tensor, from a V2 request: its JSON ``data`` or its
bytes of the binary tensor data extension, as float32, checked against the model's 0..1
range. Every mistake is a V2Error naming the bad value (service/http/v2/infer_request.py
reads the rest of the request).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.errors import quoted
from service.http.v2.errors import V2Error

# The tensor dtype of FP32 on the wire: the protocol fixes little-endian byte order.
WIRE_FP32 = np.dtype("<f4")
# MNIST convention of the model's input (docs/design.md, section 1).
PIXEL_MIN, PIXEL_MAX = 0.0, 1.0


def binary_values(size: Any, count: int, binary: memoryview, name: str) -> np.ndarray:
    if type(size) is not int or size < 0:
        raise V2Error(f"binary_data_size of input '{name}' must be a non-negative integer")
    expected = count * WIRE_FP32.itemsize
    if size != expected:
        raise V2Error(
            f"input '{name}' declares binary_data_size {quoted(size)} but its shape needs "
            f"{expected} bytes of FP32"
        )
    if size > len(binary):
        raise V2Error(
            f"input '{name}' declares {size} bytes of binary data but the body has "
            f"{len(binary)} after the JSON header"
        )
    return np.frombuffer(binary[:size], dtype=WIRE_FP32).astype(np.float32, copy=False)


def json_values(data: Any, count: int, name: str) -> np.ndarray:
    if data is None:
        raise V2Error(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
    try:
        # No dtype here: numpy would happily parse "0.5" strings into floats.
        values = np.asarray(data)
    except (ValueError, TypeError):
        raise V2Error(f"'data' of input '{name}' is not a regular array of numbers") from None
    if values.dtype.kind == "O" and all(type(v) in (int, float) for v in values.flat):
        # Integers past int64's range are numbers too (refused below, as out of range).
        values = np.fromiter(map(_as_float, values.flat), np.float64, values.size)
    if values.dtype.kind not in "iuf" or _has_booleans(data):
        raise V2Error(f"'data' of input '{name}' must hold numbers only")
    if values.size != count:
        raise V2Error(f"input '{name}' has {values.size} values but its shape needs {count}")
    with np.errstate(over="ignore"):  # past float32's range is infinity, refused as out of range
        return values.astype(np.float32).reshape(-1)


def _has_booleans(data: Any) -> bool:
    """Whether JSON ``data`` (a list, maybe nested) holds true or false anywhere: numpy reads
    them as 1 and 0 beside numbers, and the protocol's FP32 takes numbers only."""
    if not isinstance(data, list):
        return isinstance(data, bool)
    if any(isinstance(row, list) for row in data[:1]):
        return any(map(_has_booleans, data))
    return bool in set(map(type, data))


def _as_float(value: float) -> float:
    """``value`` as a float; an integer past the float range as an infinity of its sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_range(images: np.ndarray, name: str) -> None:
    low, high = float(images.min()), float(images.max())
    # Written so that NaN fails too: every comparison with NaN is false.
    if not (low >= PIXEL_MIN and high <= PIXEL_MAX):
        raise V2Error(
            f"input '{name}' values must lie in {PIXEL_MIN:g}..{PIXEL_MAX:g} (MNIST convention: "
            f"white digit on black, scaled to 0..1); got min {low:.9g}, max {high:.9g}"
        )
