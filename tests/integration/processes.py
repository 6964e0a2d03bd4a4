"""A running server's process tree and requests spread over its front ends, for the tests
that run several front ends (DIGITS_FRONT_ENDS)."""

from __future__ import annotations

from pathlib import Path

import httpx


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
