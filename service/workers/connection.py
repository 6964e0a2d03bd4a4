"""One worker process as the event loop sees it: the process, its socket, its progress slot.

Workers are *spawned*: a fresh interpreter is exec'd (never a fork of the server), without
multiprocessing's re-import of ``__main__`` or its exit hook that joins children. Each talks
to the server over its own socketpair in frames (service/workers/protocol.py). Its first frame
announces the model it opened (READY, with the ModelInfo) or why it could not (FAILED).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from service import logs
from service.contract import ModelInfo, ModelLoadError
from service.errors import ServiceError
from service.workers import protocol as wire
from service.workers.exits import describe, exit_status
from service.workers.native_output import StderrRelay
from service.workers.progress import IDLE, ProgressSlot
from service.workers.protocol import ReplyHead

# The worker's first statements: ignore the signals before the slow imports, then serve.
BOOT = (
    "import signal, sys, json; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "config = json.loads(sys.argv[1]); sys.path[:0] = config['path']; "
    "from service.workers.process import worker_main; worker_main(config)"
)
# Set before numpy loads: the pool is the parallelism, and a BLAS thread per core in every
# worker made them several times slower (docs/performance.md).
_SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A frame's bytes count as work too, an image for every so many: a large upload is seconds of
# decoding in one image, and three 40-megapixel PNGs sent together all went to one worker
# (counted as three images, under the overflow worker's backlog) while the other stood idle.
# A digit's PNG adds nothing, a V2 tensor 0.4 an image; a 320 KB PNG adds 40, a 2 MB photo 256.
LOAD_UNIT_BYTES = 8192


@dataclass(slots=True)
class Pending:
    """A frame sent to a worker and not yet answered."""

    request_id: int
    frame: bytes
    count: int  # images, for admission
    flags: int  # what the frame asked for besides the answers (service/workers/extras.py)
    future: asyncio.Future[Any]
    images: list[bytes] | None = None  # an ENCODED frame's images, to send it again
    # Images that already failed (they crashed or hung a worker): their answer, whatever
    # the frame's reply says once the rest is sent again.
    overrides: dict[int, ServiceError] = field(default_factory=dict)
    retried: bool = False
    # Images under which a worker was killed from outside (service/workers/exits.py): one
    # killed under again is blamed (service/workers/supervisor.py).
    killed_under: set[int] = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)  # how long it has waited, from here
    load: int = 0  # what it adds to its worker's load while tracked (WorkerConnection.track)
    # The X-Request-ID of the request whose task made the frame: a log line that blames one
    # of its images names the request, whose access line says what its client was told.
    http_id: str | None = field(default_factory=logs.request_id.get)


class Listener(Protocol):
    """What a connection tells its pool."""

    def on_reply(self, worker: WorkerConnection, head: ReplyHead, payload: bytes) -> None: ...

    def on_lost(self, worker: WorkerConnection) -> None: ...


class WorkerConnection(asyncio.Protocol):
    """One worker process, its socket and its progress slot."""

    def __init__(
        self,
        listener: Listener,
        process: subprocess.Popen[bytes],
        sock: socket.socket,
        slot: ProgressSlot,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.listener = listener
        self.process = process
        self.sock = sock
        self.slot = slot
        self.spawned_at = time.monotonic()
        self.outstanding: dict[int, Pending] = {}  # insertion order = the worker's order
        self.images = 0  # the load the pool balances: images outstanding, and their bytes
        self.ready = False
        self.retired = False
        self.model: ModelInfo | None = None  # what it opened: the answers' model
        # The model call its latest replies came from (the first reply of a call carries
        # the call's size and time, the others of the same call follow it).
        self.call_size = 0
        self.call_seconds = 0.0
        # The model the worker opened, or ModelLoadError: what start-up waits for.
        self.announced: asyncio.Future[ModelInfo] = loop.create_future()
        self.announced.add_done_callback(_retrieve)
        self._transport: asyncio.Transport | None = None
        self._backlog: list[bytes] = []
        self._buffer = bytearray()
        self._stderr: asyncio.Task[Any] | None = None
        if process.stderr is not None:
            relay = StderrRelay(process.pid)
            self._stderr = loop.create_task(loop.connect_read_pipe(lambda: relay, process.stderr))

    def track(self, request: Pending) -> None:
        """Count ``request`` as this worker's (its frame is written by the caller): its images,
        and an image more for every LOAD_UNIT_BYTES of its frame."""
        self.outstanding[request.request_id] = request
        request.load = request.count + len(request.frame) // LOAD_UNIT_BYTES
        self.images += request.load

    def untrack(self, request_id: int) -> Pending | None:
        request = self.outstanding.pop(request_id, None)
        if request is not None:
            self.images -= request.load
        return request

    def blamed_request(self) -> dict[str, str]:
        """The id of the request whose image this worker is decoding, as a log record's
        ``extra``; empty when it decodes none or the frame was made outside a request."""
        progress = self.slot.read()
        request = self.outstanding.get(progress.request_id) if progress.since != IDLE else None
        if request is None or request.http_id is None:
            return {}
        return {"request_id": request.http_id}

    def why_not_started(self) -> str:
        """What its announcement said, for the log line of a worker that died starting."""
        if not self.announced.done() or self.announced.cancelled():
            return "no announcement"
        return str(self.announced.exception() or "it announced a model, then died")

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self._backlog.append(data)  # still connecting: sent by connection_made
        else:
            self._transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._transport = transport
        if self._backlog:
            transport.write(b"".join(self._backlog))
            self._backlog.clear()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset, size = 0, wire.REPLY_SIZE
        while len(buffer) - offset >= size:
            head = ReplyHead.unpack_from(buffer, offset)
            end = offset + size + head.length
            if len(buffer) < end:
                break
            payload = bytes(buffer[offset + size : end])
            if head.kind in (wire.READY, wire.FAILED):
                self._announce(head.kind, payload)
            else:
                self.listener.on_reply(self, head, payload)
            offset = end
        if offset:
            del buffer[:offset]

    def _announce(self, kind: int, payload: bytes) -> None:
        if self.announced.done():
            return
        if kind == wire.READY:
            self.ready = True
            self.model = ModelInfo.from_json(payload)
            self.announced.set_result(self.model)
        else:
            self.announced.set_exception(ModelLoadError(payload.decode(errors="replace")))

    def eof_received(self) -> bool:
        return False  # close our end too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.announced.done():
            how = describe(exit_status(self.process))
            self.announced.set_exception(
                ModelLoadError(f"a worker process exited while starting ({how})")
            )
        self.listener.on_lost(self)

    def stop(self) -> None:
        """Kill the process and drop the socket (the worker is being replaced)."""
        self.retired = True
        if self.process.poll() is None:
            self.process.kill()
        self._drop_socket()

    def close_gracefully(self) -> None:
        """Tell the worker to exit after its current batch: EOF on its socket."""
        self.retired = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if not self.ready and self.process.poll() is None:  # still importing: nothing to finish
            self.process.kill()

    def _drop_socket(self) -> None:
        try:
            if self._transport is not None:
                self._transport.abort()
                return
        except RuntimeError:  # the event loop is already closed (interpreter exit)
            pass
        self.sock.close()


def _retrieve(future: asyncio.Future[ModelInfo]) -> None:
    """A replacement worker's announcement has no one waiting for it: mark its exception as
    seen (the pool logs and handles the death itself)."""
    if not future.cancelled():
        future.exception()


def spawn(
    listener: Listener, config: dict[str, Any], loop: asyncio.AbstractEventLoop
) -> WorkerConnection:
    """Start a worker process with ``config`` (plus its socket and slot descriptors)."""
    parent_sock, child_sock = socket.socketpair()
    slot, slot_fd = ProgressSlot.new()
    config = {
        **config,
        "fd": child_sock.fileno(),
        "progress_fd": slot_fd,
        "path": [entry for entry in sys.path if entry],
    }
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", BOOT, json.dumps(config)],
            pass_fds=(child_sock.fileno(), slot_fd),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # relayed as JSON lines (service/workers/native_output.py)
            env={**os.environ, **_SINGLE_THREADED},
        )
    finally:
        child_sock.close()
        os.close(slot_fd)
    return WorkerConnection(listener, process, parent_sock, slot, loop)
