"""Two checkouts side by side: /predict throughput at c=16 (each served in turn, their order
reversed every other round, then the tutorial peer with two processes) and the preprocessing
time of the benchmark's PNG in each (docs/performance.md, "/predict slower since 96e44ec").

    git worktree add ../old 96e44ec
    .venv/bin/python scripts/compare_checkouts.py ../old . [--rounds 3]

Both run on this checkout's virtual environment; needs `wrk` (as `make bench`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import run_wrk  # noqa: E402
from bench.payloads import digit_png, multipart  # noqa: E402
from bench.server import running_peer, running_service  # noqa: E402

CONNECTIONS = 16
WARMUP_S, MEASURE_S = 2.0, 6.0
# Run in each checkout's own code (its folder first on the path): the best of 5 rounds of
# 1,000 calls, after 200 to warm up.
_PREPROCESS = """
import sys, time
sys.path.insert(0, sys.argv[1])
from bench.payloads import digit_png
from service.imaging import preprocess_image
data, best = digit_png(), float("inf")
run = lambda: preprocess_image(data, allowed_formats={"PNG"}, max_pixels=10**7)
for _ in range(200): run()
for _ in range(5):
    started = time.perf_counter()
    for _ in range(1000): run()
    best = min(best, (time.perf_counter() - started) / 1000)
print(round(best * 1e6))
"""


def preprocess_us(checkout: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PREPROCESS, str(checkout)], capture_output=True, text=True
    )
    return int(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", type=Path, nargs=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checkouts = [path.resolve() for path in args.checkouts]
    payload = multipart("file", [("digit.png", digit_png(), "image/png")])
    peer_env = {"DIGITS_MODEL_PATH": str(ROOT / "models" / "lenet5.onnx")}

    def throughput(url: str) -> float:
        run_wrk(f"{url}/predict", payload, connections=CONNECTIONS, duration_s=WARMUP_S)
        result = run_wrk(f"{url}/predict", payload, connections=CONNECTIONS, duration_s=MEASURE_S)
        return result.requests_per_s

    rates: dict[str, list[float]] = {str(path): [] for path in checkouts}
    rates["peer"] = []
    for round_ in range(args.rounds):
        for path in checkouts if round_ % 2 == 0 else checkouts[::-1]:  # neither always first
            with running_service({}, cwd=path) as service:
                rates[str(path)].append(throughput(service.url))
        with running_peer("bench.peers.tutorial:app", 2, peer_env) as peer:
            rates["peer"].append(throughput(peer.url))
    for name, values in rates.items():
        ratios = [value / peer for value, peer in zip(values, rates["peer"], strict=True)]
        pairs = zip(values, ratios, strict=True)
        shown = ", ".join(f"{value:,.0f} ({ratio:.2f}x)" for value, ratio in pairs)
        sys.stdout.write(f"{name}: /predict c={CONNECTIONS} req/s (x tutorial peer): {shown}\n")
    for path in checkouts:
        sys.stdout.write(f"{path}: preprocessing the benchmark's PNG {preprocess_us(path)} us\n")


if __name__ == "__main__":
    main()
