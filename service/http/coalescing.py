"""One send per small response: uvicorn writes a response's head and its body separately,
which costs two syscalls and two TCP segments for an answer of a few hundred bytes."""

from __future__ import annotations

import asyncio


class HeldHead:
    """The transport as a request's cycle sees it: the first write of a response (its head)
    waits for the next one (its body), so both leave in one send."""

    __slots__ = ("transport", "held", "armed")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: bytes | None = None
        self.armed = False

    def write(self, data: bytes) -> None:
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
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()
