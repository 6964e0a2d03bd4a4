"""MNIST test digits written with a broader pen, through the service's preprocessing and a
model: how fast accuracy and confidence fall as strokes widen (docs/performance.md, "Probed
and left: a pen too broad for the digit").

    .venv/bin/python scripts/bold_pens.py [--count 1000] [--model models/lenet5.onnx]

Each digit is enlarged four times (bicubic), its strokes widened by a disc (a disc of 9
pixels widens them by 8 at that scale, 2 pixels of the 28x28 image), framed in paper and sent
as a dark-on-white PNG through ``preprocess_image``; the model's top answer is compared
with the label. Needs the dev environment (the MNIST files under ../shared or
$DIGITS_DATA_DIR).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.imaging import preprocess_image  # noqa: E402
from tests.conftest import default_mnist_dir  # noqa: E402
from training.data import load_split  # noqa: E402

SCALE = 4
FRAME = 40  # paper round the enlarged digit, in pixels
DISCS = (0, 9, 17, 25, 33)  # disc diameters, in pixels of the enlarged image


def with_pen(digit: np.ndarray, disc: int) -> bytes:
    """``digit`` (28x28, ink bright) enlarged, widened by a ``disc``-pixel pen, as a PNG."""
    side = digit.shape[0] * SCALE
    big = cv2.resize(digit, (side, side), interpolation=cv2.INTER_CUBIC)
    if disc:
        big = cv2.dilate(big, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (disc, disc)))
    big = cv2.copyMakeBorder(big, FRAME, FRAME, FRAME, FRAME, cv2.BORDER_CONSTANT, value=0)
    buffer = io.BytesIO()
    Image.fromarray(255 - big).save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="MNIST test digits, from the first")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "lenet5.onnx")
    args = parser.parse_args()
    test = load_split(default_mnist_dir(), train=False)
    images, labels = test.images[: args.count], test.labels[: args.count]
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    sys.stdout.write(
        "widened by (px of 28x28) | accuracy % | wrong at confidence >= 0.9 | mean confidence\n"
    )
    for disc in DISCS:
        prepared = np.stack(
            [
                preprocess_image(with_pen(digit, disc), allowed_formats={"PNG"}, max_pixels=10**8)
                for digit in images
            ]
        )
        (probabilities,) = session.run(None, {"image": prepared[:, None].astype(np.float32)})
        answers, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
        right = answers == labels
        sys.stdout.write(
            f"{max(disc - 1, 0) / SCALE:>24.0f} | {100 * right.mean():>10.2f} | "
            f"{int(((~right) & (confidence >= 0.9)).sum()):>26} | {confidence.mean():.3f}\n"
        )


if __name__ == "__main__":
    main()
