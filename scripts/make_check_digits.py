"""Write models/check-digits.npz: the labelled real digits every model load is checked on.

    python scripts/make_check_digits.py [--data-dir DIR] [--per-class 10]

(DIR: default $DIGITS_DATA_DIR, then ../shared/data/mnist beside the repository.)

The first ``per-class`` digits of each class in the MNIST test set (checksums verified by
training.data), as MNIST made them: uint8 [N, 28, 28], white on black, already in the model's
input convention, so the check measures the model file alone. A load is refused when the
model's accuracy on them is below DIGITS_MODEL_MIN_ACCURACY (service/repository/gate.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from training.data import load_split

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "models" / "check-digits.npz"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "mnist"


def pick(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` examples of each digit, in test-set order."""
    chosen = [np.flatnonzero(labels == digit)[:per_class] for digit in range(10)]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(os.environ.get("DIGITS_DATA_DIR") or SHARED_DATA)
    test = load_split(data_dir, train=False)
    indices = pick(test.labels, args.per_class)
    np.savez_compressed(
        args.out,
        images=test.images[indices],
        labels=test.labels[indices].astype(np.uint8),
        test_indices=indices.astype(np.int32),
    )
    print(f"{args.out}: {len(indices)} MNIST test digits ({args.per_class} per class)")  # noqa: T201


if __name__ == "__main__":
    main()
