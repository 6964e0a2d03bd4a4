"""One send per small response: uvicorn writes a response's head and its body separately,
which costs two syscalls and two TCP segments for an answer of a few hundred bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class HeldHead:
    """The transport as a request's cycle sees it: the first write of a response (its head)
    waits for the next one (its body), so both leave in one send. ``closing`` is how the
    connection is closed when the cycle closes it. Once the connection is refused and
    half-closed (``shut``), what an answer still in flight writes is dropped: asyncio raises
    on a write after ``write_eof``."""

    __slots__ = ("transport", "closing", "held", "armed", "shut")

    def __init__(self, transport: asyncio.Transport, closing: Callable[[], None]) -> None:
        self.transport = transport
        self.closing = closing
        self.held: bytes | None = None
        self.armed = False
        self.shut = False

    def write(self, data: bytes) -> None:
        if self.shut:
            return
        if self.armed:
            self.armed, self.held = False, data
            return
        if self.held is not None:
            data, self.held = self.held + data, None
        self.transport.write(data)

    def flush(self) -> None:
        self.armed = False
        if self.held is not None:
            held, self.held = self.held, None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.closing()

    def shut_down(self) -> None:
        """The connection is being refused: nothing more from the answers."""
        self.shut, self.armed, self.held = True, False, None

    def is_closing(self) -> bool:
        return self.shut or self.transport.is_closing()
