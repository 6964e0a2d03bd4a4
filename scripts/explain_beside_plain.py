"""Plain /predict latency before, during and after clients sending ?explain=true batches.

One client sends examples/digit.png to /predict every 0.2 s throughout; during the middle
phase, ``--explain-clients`` clients loop POST /predict/batch?explain=true with 64 of the
examples. Prints the plain requests' p50 / p90 / max per phase and the explained batches'
round trips. docs/performance.md, "Explanations beside plain requests", has its figures.

    python scripts/explain_beside_plain.py --url http://127.0.0.1:8000 --explain-clients 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BATCH = 64
PROBE_EVERY_S = 0.2
TIMEOUT_S = 120.0


def probe(url: str, image: bytes, seconds: float, label: str) -> None:
    """Plain requests for ``seconds``; their latencies, one line."""
    latencies, statuses = [], set()
    with httpx.Client(timeout=TIMEOUT_S) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            response = client.post(f"{url}/predict", files={"file": ("d.png", image, "image/png")})
            latencies.append((time.perf_counter() - started) * 1000)
            statuses.add(response.status_code)
            time.sleep(PROBE_EVERY_S)
    latencies.sort()
    p90 = latencies[int(len(latencies) * 0.9)]
    sys.stdout.write(
        f"{label:32s} n={len(latencies)} p50={statistics.median(latencies):.0f} ms "
        f"p90={p90:.0f} ms max={latencies[-1]:.0f} ms statuses={sorted(statuses)}\n"
    )


def explain_loop(url: str, files: list[tuple[str, bytes]], stop: threading.Event) -> list[float]:
    """Explained batches until ``stop``; each one's round trip in seconds."""
    trips = []
    fields = [("files", (name, data, "image/png")) for name, data in files]
    with httpx.Client(timeout=TIMEOUT_S) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = client.post(f"{url}/predict/batch?explain=true", files=fields)
            response.raise_for_status()
            trips.append(time.perf_counter() - started)
    return trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--explain-clients", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="of explained batches")
    args = parser.parse_args()
    examples = sorted(path for path in EXAMPLES.iterdir() if path.suffix in (".png", ".jpg"))
    files = [(path.name, path.read_bytes()) for path in examples]
    files = (files * BATCH)[:BATCH]
    image = (EXAMPLES / "digit.png").read_bytes()
    probe(args.url, image, 5, "before")
    stop, trips = threading.Event(), []

    def client() -> None:
        trips.extend(explain_loop(args.url, files, stop))

    threads = [threading.Thread(target=client) for _ in range(args.explain_clients)]
    for thread in threads:
        thread.start()
    probe(args.url, image, args.seconds, f"beside {args.explain_clients} explaining clients")
    stop.set()
    for thread in threads:
        thread.join()
    probe(args.url, image, 5, "after")
    shown = ", ".join(f"{trip:.1f}" for trip in trips)
    sys.stdout.write(f"explained batches of {BATCH}: {len(trips)}, round trips (s): {shown}\n")


if __name__ == "__main__":
    main()
