"""The event loop's Python per request on the HTTP path, without sockets or other processes.

uvicorn's protocol (the service's GuardedProtocol) is fed whole requests for the benchmark
app's no-op route and writes its answers into a transport that keeps them, in one asyncio
loop. So the figure is the Python the loop runs per request (parsing, the ASGI cycle or the
direct lane, the handler's request id, metrics and multipart reading), free of the syscalls
and of the other processes that make the socket benchmark drift on a shared machine. The
two paths run alternately in one process and their ratio is printed. Access lines are
written as the settings say (DIGITS_ACCESS_LOG, on by default), to /dev/null.

    python -m bench.http_path [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from bench.app import NOOP_PATH, create_bench_app
from bench.payloads import digit_png, multipart
from service.app import connection_limits
from service.http.connections import GuardedProtocol
from service.http.guard import GUARD, ConnectionGuard
from service.http.lane import LANE, DirectLane
from service.http.state import app_state

PEER = ("127.0.0.1", 50000)
LOCAL = ("127.0.0.1", 8000)


class KeptTransport(asyncio.Transport):
    """A transport that keeps what is written and never blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER, "sockname": LOCAL}.get(name, default)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def noop_request() -> bytes:
    """A /predict-shaped multipart request (the bench's 28x28 PNG) for the no-op route."""
    payload = multipart("file", [("digit.png", digit_png(), "image/png")])
    head = (
        f"POST {NOOP_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n"
        f"Content-Type: {payload.content_type}\r\nContent-Length: {len(payload.body)}\r\n\r\n"
    )
    return head.encode() + payload.body


class Path:
    """One connection of the bench app's server, with or without the direct lane."""

    def __init__(self, lane: bool) -> None:
        app = create_bench_app()
        state = app_state(app)
        config = uvicorn.Config(app, http=GuardedProtocol, log_config=None, server_header=False)
        config.load()
        lifespan: dict[str, Any] = {
            GUARD: ConnectionGuard(connection_limits(state.settings), state.metrics)
        }
        if lane:
            lifespan[LANE] = DirectLane(app.fast_routes)
        self.protocol = GuardedProtocol(
            config=config, server_state=ServerState(), app_state=lifespan
        )
        self.transport = KeptTransport()
        self.protocol.connection_made(self.transport)

    async def answer(self, request: bytes) -> bytes:
        """Feed one request and run the loop until its answer is written."""
        written = self.transport.written
        before = len(written)
        self.protocol.data_received(request)
        while len(written) == before:
            await asyncio.sleep(0)
        answer = written.pop()
        written.clear()
        return answer

    async def seconds_per_request(self, request: bytes, requests: int) -> float:
        """This process's CPU time per request: what another tenant takes of the machine
        (steal) is not counted, its cache pressure is."""
        started = time.process_time()
        for _ in range(requests):
            await self.answer(request)
        return (time.process_time() - started) / requests


async def compare(requests: int, rounds: int) -> list[tuple[float, float]]:
    """(ASGI path, lane) seconds per request, for each round."""
    request = noop_request()
    paths = {"asgi": Path(lane=False), "lane": Path(lane=True)}
    for path in paths.values():  # warm up, and check both answer
        answer = await path.answer(request)
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the no-op route answered {answer[:80]!r}")
        await path.seconds_per_request(request, requests // 10)
    results = []
    for _ in range(rounds):
        asgi = await paths["asgi"].seconds_per_request(request, requests)
        lane = await paths["lane"].seconds_per_request(request, requests)
        results.append((asgi, lane))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # The access lines are written as shipped (DIGITS_ACCESS_LOG), to nowhere.
    with open(os.devnull, "w") as nowhere, contextlib.redirect_stderr(nowhere):
        results = asyncio.run(compare(args.requests, args.rounds))
    sys.stdout.write(format_results(results))


def format_results(results: list[tuple[float, float]]) -> str:
    """One line per round, then the best round of each path and the median ratio."""
    lines = [
        f"round {number}: ASGI path {asgi * 1e6:5.1f} us/request, direct lane "
        f"{lane * 1e6:5.1f} us/request, lane/ASGI {lane / asgi:.2f}"
        for number, (asgi, lane) in enumerate(results, 1)
    ]
    asgi_best, lane_best = (min(column) for column in zip(*results, strict=True))
    ratios = sorted(lane / asgi for asgi, lane in results)
    lines.append(
        f"best round: ASGI path {asgi_best * 1e6:.1f} us/request, direct lane "
        f"{lane_best * 1e6:.1f} us/request; median lane/ASGI {ratios[len(ratios) // 2]:.2f}"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
