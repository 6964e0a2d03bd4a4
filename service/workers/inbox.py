"""The worker's side of its socket: the frames the server sends, parsed as they arrive.

``SocketInbox`` is what batching.py's ``collect`` reads from (blocking, polling or timed);
``waiting`` tells the shadow model (service/workers/shadow.py) whether work is waiting, so
the shadow never delays an answer.
"""

from __future__ import annotations

import select
import socket
from dataclasses import dataclass

from service.workers import protocol as wire
from service.workers.extras import split_trace

RECEIVE_BYTES = 1 << 20


@dataclass(slots=True)
class Frame:
    """One input as received: ``count`` encoded images, or ``count`` ready images."""

    request_id: int
    kind: int
    flags: int
    count: int
    sent_at: float
    payload: bytes

    def images(self) -> list[bytes]:
        """The encoded images of an ENCODED frame."""
        return wire.unpack_images(self.payload, self.count)

    @property
    def trace_context(self) -> bytes | None:
        """The request's W3C trace context when the frame is TRACED (the worker's log lines
        about it name its trace)."""
        return split_trace(self.payload, self.flags)


class SocketInbox:
    """Frames from the server's socket, for ``collect``: blocking, polling or timed."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        # One receive buffer for the worker's life: a fresh 1 MiB object per ``recv`` cost
        # three memory syscalls per frame.
        self._chunk = memoryview(bytearray(RECEIVE_BYTES))
        self._pushed: list[Frame] = []
        self._closed = False

    def next(self, timeout: float | None) -> Frame | None:
        if self._pushed:
            return self._pushed.pop()
        while True:
            frame = self._parse()
            if frame is not None or self._closed:
                return frame
            if not self._receive(timeout):
                return None

    def push_back(self, item: Frame) -> None:
        self._pushed.append(item)

    def waiting(self) -> bool:
        """Whether another input has (at least partly) arrived: the shadow yields to it."""
        if self._pushed or len(self._buffer) >= wire.REQUEST_SIZE:
            return True
        return bool(select.select([self._sock], [], [], 0)[0])

    def _receive(self, timeout: float | None) -> bool:
        try:
            if timeout == 0:  # the common poll after a batch's first frame: one syscall
                received = self._sock.recv_into(self._chunk, 0, socket.MSG_DONTWAIT)
            elif timeout is None or select.select([self._sock], [], [], timeout)[0]:
                received = self._sock.recv_into(self._chunk)
            else:
                return False
        except BlockingIOError:
            return False
        if not received:
            self._closed = True  # the server closed the socket (or died): finish and exit
        self._buffer += self._chunk[:received]
        return True

    def _parse(self) -> Frame | None:
        buffer = self._buffer
        if len(buffer) < wire.REQUEST_SIZE:
            return None
        head = wire.RequestHead.unpack_from(buffer)
        end = wire.REQUEST_SIZE + head.length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[wire.REQUEST_SIZE : end])
        del buffer[:end]
        return Frame(head.request_id, head.kind, head.flags, head.images, head.sent_at, payload)
