"""A running server's process tree and requests spread over its front ends, for the tests
that run several front ends (DIGITS_FRONT_ENDS)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.server import RunningService


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def descendants(pid: int) -> dict[int, bytes]:
    """pid -> command line of every process below ``pid``."""
    found: dict[int, bytes] = {}
    pending = [pid]
    while pending:
        parent = pending.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if parent_of(int(entry.name)) == parent:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes()
                    pending.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


def predict_on_new_connection(url: str, image: bytes) -> httpx.Response:
    """A /predict on a connection of its own: whichever front end accepts it answers."""
    return httpx.post(
        f"{url}/predict",
        content=image,
        headers={"Content-Type": "image/png", "Connection": "close"},
        timeout=30,
    )


def wait_for(condition: Callable[[], bool], server: RunningService, timeout_s: float) -> None:
    """Poll ``condition`` until it holds; past ``timeout_s`` fail with the server's log tail.
    /readyz answers once one front end serves, while another may still be starting (it takes
    no connection until its lifespan is done): tests that need every one wait for its line."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, server.log()[-4000:]
        time.sleep(0.1)
