"""Accuracy through the API on digits rendered the way people send them.

MNIST test digits drawn black on white, enlarged and off-centre, as PNG and JPEG, must score
within 0.3 points of the shipped model's offline accuracy on the same digits; scikit-learn's
8x8 digits (other writers), enlarged and black on white, must score at least 96 %.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.service.conftest import SEED, served_digits

MAX_DROP_POINTS = 0.3
SKLEARN_MIN_ACCURACY = 0.96


def as_user_would_send(digit: np.ndarray, fmt: str, rng: np.random.Generator) -> bytes:
    """Black on white, enlarged 3-8x, somewhere on a larger sheet, PNG or JPEG."""
    scale = int(rng.integers(3, 9))
    side = 28 * scale
    enlarged = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BILINEAR)
    width, height = (int(side * rng.uniform(1.2, 2.0)) for _ in range(2))
    sheet = Image.new("L", (width, height), 255)
    sheet.paste(
        enlarged, (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)))
    )
    buffer = io.BytesIO()
    sheet.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_mnist_as_users_send_it_matches_offline_accuracy(
    accuracy_client: TestClient, shipped_model: Path, mnist_sample: tuple, fmt: str
) -> None:
    images, labels = mnist_sample
    session = ort.InferenceSession(str(shipped_model), providers=["CPUExecutionProvider"])
    batch = (images[:, np.newaxis] / np.float32(255)).astype(np.float32)
    offline = float((session.run(None, {"image": batch})[0].argmax(axis=1) == labels).mean())
    rng = np.random.default_rng(SEED)
    rendered = [as_user_would_send(digit, fmt, rng) for digit in images]
    served = float((served_digits(accuracy_client, rendered) == labels).mean())
    assert served >= offline - MAX_DROP_POINTS / 100, (
        f"{fmt}: served {served:.4f} vs offline {offline:.4f}"
    )


def test_sklearn_digits_by_other_writers(accuracy_client: TestClient) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rendered = []
    for image in digits.images:  # 8x8, 0..16, white ink on black
        pixels = (255 - image * (255 / 16)).astype(np.uint8)
        enlarged = Image.fromarray(pixels).resize((96, 96), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        enlarged.save(buffer, format="PNG")
        rendered.append(buffer.getvalue())
    accuracy = float((served_digits(accuracy_client, rendered) == digits.target).mean())
    assert accuracy >= SKLEARN_MIN_ACCURACY, f"sklearn digits: {accuracy:.4f}"
