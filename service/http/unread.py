"""Whether a connection's client reads what it is sent (the guard's sweep drops one that does
not, service/http/guard.py), and what of an answer has not reached it."""

from __future__ import annotations

import asyncio
import fcntl
import sys
import termios


class Unread:
    """Whether a connection's client reads what it is sent: what its transport holds (past the
    kernel's buffer) and what the kernel holds for it must shrink, or let a paused writer go
    on, from one sweep to the next. uvicorn waits without a limit for a client that reads
    nothing, which so holds its connection and the answers it asked for as long as it likes."""

    __slots__ = ("pending", "since", "drained")

    def __init__(self) -> None:
        self.pending, self.since, self.drained = 0, 0.0, False

    def stalled(self, now: float, transport: asyncio.Transport) -> float:
        """For how long none of what waits to be sent on ``transport`` has left."""
        buffered = transport.get_write_buffer_size()
        pending = buffered + kernel_queue(transport) if buffered else 0
        if not pending or not self.pending or pending < self.pending or self.drained:
            self.since = now
        self.pending, self.drained = pending, False
        return now - self.since


def kernel_queue(transport: asyncio.Transport) -> int:
    """Bytes the kernel holds to send on the transport's socket, not yet read by the client
    (Linux's SIOCOUTQ): it shrinks as a slow client reads, while asyncio's buffer waits for
    it to be a third empty. 0 where the kernel does not say."""
    try:
        sock = transport.get_extra_info("socket")
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return 0
    return int.from_bytes(queued, sys.byteorder, signed=True)


def unsent(transport: asyncio.Transport) -> int:
    """Bytes written on ``transport`` that have not reached its client: asyncio's buffer and
    the kernel's."""
    return transport.get_write_buffer_size() + kernel_queue(transport)
