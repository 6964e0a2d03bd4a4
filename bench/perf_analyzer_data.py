"""``python -m bench.perf_analyzer_data``: real MNIST digits as a perf_analyzer input file.

perf_analyzer's default input for an FP32 tensor is random bytes, almost all of them NaN or
far outside 0..1, which the V2 route refuses (400); ``--input-data zero`` sends blank images,
and this writes real ones ("Real Input Data" in perf_analyzer's docs: one entry per request
of batch 1, the tensor flattened in row-major order), the model's own convention: white
digit on black, 0..1. See the README's "Driving the V2 route with perf_analyzer".

    python -m bench.perf_analyzer_data --count 100 > digits.json
    perf_analyzer -m lenet5 -u 127.0.0.1:8000 -i http --input-data digits.json -b 8
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np

from client.cli import positive_int

INPUT_NAME = "image"
IMAGES_FILE = "t10k-images-idx3-ubyte.gz"


def digits_file(mnist_dir: Path, count: int) -> dict[str, list[dict[str, list[float]]]]:
    """The first ``count`` MNIST test digits as perf_analyzer's input JSON."""
    raw = gzip.decompress((mnist_dir / IMAGES_FILE).read_bytes())
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28 * 28)[:count]
    scaled = (images.astype(np.float32) / 255.0).round(4)
    return {"data": [{INPUT_NAME: row} for row in scaled.tolist()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf_analyzer_data",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    default_dir = os.environ.get("DIGITS_DATA_DIR", "../shared/data/mnist")
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir), help="MNIST files")
    parser.add_argument("--count", type=positive_int, default=100, help="digits to write")
    args = parser.parse_args(argv)
    json.dump(digits_file(args.data_dir, args.count), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
