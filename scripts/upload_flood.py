"""How much memory a front end holds while many clients upload large bodies at once.

N connections each send one body of SIZE bytes (a PNG signature, then random bytes) to
/predict at full speed, while the front end's VmRSS is sampled every 20 ms; prints the peak,
what is left after, and the answers' statuses. docs/performance.md, "Request bodies in
flight", has its figures.

    python scripts/upload_flood.py --connections 100 --pid PID_OF_PYTHON_M_SERVICE
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

SAMPLE_S = 0.02
ANSWER_TIMEOUT_S = 60.0


def rss_mb(pid: int) -> int:
    """The process's resident memory in MB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next(line for line in status.splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) // 1024


async def upload(port: int, body: bytes) -> str:
    """One request on its own connection; its status, or what went wrong."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        writer.write(head + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
        return line.split()[1].decode() if line else "closed"
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__
    finally:
        writer.close()


async def flood(port: int, connections: int, size: int) -> Counter[str]:
    body = b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)
    return Counter(await asyncio.gather(*(upload(port, body) for _ in range(connections))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=10_000_000, help="bytes per body")
    parser.add_argument("--pid", type=int, required=True, help="the front end's process id")
    args = parser.parse_args()
    peak, before = [0], rss_mb(args.pid)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(args.pid))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    statuses = asyncio.run(flood(args.port, args.connections, args.size))
    done.set()
    sampler.join()
    sys.stdout.write(
        f"connections={args.connections} size={args.size}: RSS before {before} MB, peak "
        f"{peak[0]} MB, after {rss_mb(args.pid)} MB, {time.monotonic() - started:.1f} s, "
        f"statuses {dict(sorted(statuses.items()))}\n"
    )


if __name__ == "__main__":
    main()
