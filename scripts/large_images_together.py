"""Latency of large images sent together: COUNT 8000x5000 16-bit RGBA PNGs of a drawn 7
(about 320 KB each, seconds of decoding) posted to /predict at the same moment, each on its
own connection. docs/performance.md, "Large images sent together", has its figures.

    python scripts/large_images_together.py --url http://127.0.0.1:8000 --count 3
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import cv2
import httpx
import numpy as np

WIDTH, HEIGHT = 8000, 5000
TIMEOUT_S = 120.0


def large_png() -> bytes:
    """A 7 drawn thick in the middle of a white 40-megapixel 16-bit RGBA page."""
    page = np.full((HEIGHT, WIDTH), 255, np.uint8)
    cv2.polylines(page, [np.array([[3200, 1700], [4800, 1700], [3800, 3400]])], False, 0, 150)
    deep = page.astype(np.uint16) * 257
    opaque = np.full_like(deep, 65535)
    ok, encoded = cv2.imencode(".png", np.dstack([deep, deep, deep, opaque]))
    assert ok
    return encoded.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()
    image = large_png()
    answers: list[str] = [""] * args.count

    def send(index: int) -> None:
        started = time.perf_counter()
        response = httpx.post(
            f"{args.url}/predict",
            content=image,
            headers={"Content-Type": "image/png"},
            timeout=TIMEOUT_S,
        )
        seconds = time.perf_counter() - started
        body = response.json()
        what = body.get("digit", body.get("error"))
        answers[index] = f"{response.status_code} {what} in {seconds:.1f} s"

    threads = [threading.Thread(target=send, args=(i,)) for i in range(args.count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.stdout.write(f"{len(image)} bytes each: " + "; ".join(answers) + "\n")


if __name__ == "__main__":
    main()
