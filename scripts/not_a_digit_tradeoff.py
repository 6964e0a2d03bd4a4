"""The not_a_digit trade-off of a model, measured through the API (README, "Images that are
not digits"): for several thresholds, the accuracy points real digits lose to refusals and
the share of held-out non-digits refused.

    .venv/bin/python scripts/not_a_digit_tradeoff.py [--model models/lenet5.onnx]

The sets are the accuracy tests' own (tests/service): 1000 MNIST test digits as users send
them (PNG), scikit-learn's 1797 8x8 digits, 150 photographed digits per photo condition, and
the held-out non-digits (letters, symbols, shapes, scribbles). Every image goes once through
/predict/batch with DIGITS_NOT_A_DIGIT_THRESHOLD=0, which refuses only ink shaped like no
digit; the model's score of every answer then says what each threshold would refuse.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.workers.verdict import scores  # noqa: E402
from tests.conftest import default_mnist_dir  # noqa: E402
from tests.service.conftest import (  # noqa: E402
    CHUNK,
    SEED,
    Served,
    mnist_test_sample,
    served_answers,
)
from tests.service.nondigit_images import held_out_fonts, nondigit_set  # noqa: E402
from tests.service.test_accuracy import as_user_would_send  # noqa: E402
from tests.service.test_photo_conditions import CONDITIONS, COUNT, photograph  # noqa: E402


def digit_sets() -> dict[str, tuple[list[bytes], np.ndarray]]:
    from sklearn.datasets import load_digits

    images, labels = mnist_test_sample(default_mnist_dir())
    rng = np.random.default_rng(SEED)
    sets = {"MNIST as sent (PNG)": ([as_user_would_send(d, "PNG", rng) for d in images], labels)}
    sklearn = load_digits()
    rendered = []
    for image in sklearn.images:
        buffer = io.BytesIO()
        pixels = Image.fromarray((255 - image * (255 / 16)).astype(np.uint8))
        pixels.resize((96, 96), Image.Resampling.BILINEAR).save(buffer, format="PNG")
        rendered.append(buffer.getvalue())
    sets["scikit-learn 8x8"] = (rendered, sklearn.target)
    photos: list[bytes] = []
    for name in CONDITIONS:
        rng = np.random.default_rng(len(name))
        photos += [photograph(digit, name, rng) for digit in images[:COUNT]]
    sets["photo conditions"] = (photos, np.tile(labels[:COUNT], len(CONDITIONS)))
    return sets


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def refused_at(served: Served, rule: str, threshold: float) -> np.ndarray:
    answered = served.digits != -1
    low = np.zeros(len(served.digits), bool)
    low[answered] = scores(served.probabilities[answered], rule) < threshold
    return ~answered | low


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "lenet5.onnx")
    parser.add_argument("--thresholds", type=float, nargs="*", default=None)
    args = parser.parse_args()
    settings = Settings(model_path=args.model, max_batch_files=CHUNK, not_a_digit_threshold="0")
    with TestClient(create_app(settings)) as client:
        rule = client.get("/model").json()["not_a_digit"]["rule"]
        from onnx import load

        metadata = {p.key: p.value for p in load(str(args.model)).metadata_props}
        shipped = json.loads(metadata["not_a_digit"])["threshold"]
        digits = {
            name: (served_answers(client, images), labels)
            for name, (images, labels) in digit_sets().items()
        }
        nondigits = {
            kind: served_answers(client, images)
            for kind, images in nondigit_set(held_out_fonts()).items()
        }
    thresholds = sorted(set(args.thresholds or [0.0, shipped / 2, shipped, shipped * 1.5]))
    names = list(digits) + ["non-digits refused"]
    say(f"rule {rule}, shipped threshold {shipped:g}; digits: accuracy points lost to refusals")
    say("| threshold | " + " | ".join(names) + " |")
    say("| --- |" + " --- |" * len(names))
    for threshold in thresholds:
        cells = []
        for served, labels in digits.values():
            lost = refused_at(served, rule, threshold) & (served.guesses == labels)
            cells.append(f"{lost.mean() * 100:.2f}")
        refused = np.concatenate([refused_at(s, rule, threshold) for s in nondigits.values()])
        per_kind = ", ".join(
            f"{kind} {refused_at(s, rule, threshold).mean():.0%}" for kind, s in nondigits.items()
        )
        cells.append(f"{refused.mean():.1%} ({per_kind})")
        mark = " (shipped)" if threshold == shipped else ""
        say(f"| {threshold:.3f}{mark} | " + " | ".join(cells) + " |")
    for name, (served, labels) in digits.items():
        kept = (served.digits == labels) & ~refused_at(served, rule, shipped)
        say(
            f"{name}: accuracy with the shipped threshold {kept.mean():.4f}, "
            f"without refusals {(served.guesses == labels).mean():.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
