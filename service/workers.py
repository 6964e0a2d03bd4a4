"""The preprocessing process pool: decode + normalisation in worker processes.

Why processes: ``preprocess_image`` is mostly Python/numpy glue that holds the GIL for a few
hundred microseconds per small PNG; run in threads of the server process it starves the event
loop. Workers are *spawned*: a fresh interpreter is exec'd (the parent has threads and an ONNX
Runtime session: never fork it), without multiprocessing's re-import of ``__main__`` (a script
without a main guard would make every worker die at start) or its exit hook that joins
children. Each worker talks to the parent over its own socketpair, with fixed struct frames
and no pickle. The parent side is an asyncio Protocol per worker, so the event loop's share of an
image is one frame written, one frame parsed and one future: no helper threads in the parent.

Robustness: a worker answers its requests in order, so the oldest unanswered one is the image
it is working on. That image gets ``timeout_seconds``; past that, or when the worker dies
(segfault, OOM kill), it fails as ``invalid_image``, the worker is replaced, and the requests
queued behind it are sent again (once). A worker that dies before it is ready (a broken
install) fails its requests with 503 and is restarted only after ``RESTART_BACKOFF_S``.
Workers ignore SIGINT/SIGTERM (the parent drains, then stops them) and exit when their
socket closes, so a killed parent leaves no orphans.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import cv2
import numpy as np

from service.errors import InvalidImage, NotReady, ServiceError
from service.preprocessing import SIZE, preprocess_image

logger = logging.getLogger("service.workers")

# Frame: request id, kind, seconds the worker spent (replies only), payload length; payload.
_HEADER = struct.Struct("<IBdI")
_ERROR_HEAD = struct.Struct("<HH")  # an error payload: status, code length; code; message
_REQUEST, _IMAGE, _ERROR, _READY = 1, 2, 3, 4
_ID_LIMIT = 2**32  # request ids wrap around within the header's uint32
IMAGE_SHAPE = (SIZE, SIZE)
_IMAGE_BYTES = SIZE * SIZE * np.dtype(np.float32).itemsize

SHUTDOWN_GRACE_S = 2.0  # a worker finishing its current image before it is killed
STARTUP_ALLOWANCE_S = 60.0  # importing OpenCV and numpy on a busy machine, before any timeout
_WATCH_FRACTION = 0.25  # the watchdog looks this often per timeout...
_WATCH_MAX_S = 1.0  # ...and at least once a second
# Set before numpy loads: the pool is the parallelism. With OpenBLAS's default thread per
# core in every worker, two workers decoding photos took 13 ms an image instead of 2.7 ms.
_SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RESTART_BACKOFF_S = 1.0  # a worker that dies while starting is not respawned in a tight loop
_RETIRED_LOAD = sys.maxsize  # a dead worker is never the least busy
_INTERNAL_STATUS = 500
# The worker's first statements: ignore the signals before the slow imports, then serve.
_BOOT = (
    "import signal, sys, json; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "config = json.loads(sys.argv[1]); sys.path[:0] = config['path']; "
    "from service.workers import worker_main; worker_main(config)"
)


class Preprocess(Protocol):
    """``preprocess_image``'s signature; tests inject slow or crashing stand-ins."""

    def __call__(
        self, data: bytes, *, allowed_formats: Collection[str], max_pixels: int
    ) -> np.ndarray: ...


# --- The worker process -------------------------------------------------------------------


def worker_main(config: dict[str, Any]) -> None:
    """Entry point of a worker process (see ``_BOOT``): ``config`` is what ``_spawn`` sent."""
    cv2.setNumThreads(1)  # as _SINGLE_THREADED: one thread per worker, the pool is the parallelism
    module, _, name = str(config["preprocess"]).partition(":")
    preprocess: Preprocess = getattr(importlib.import_module(module), name)
    sock = socket.socket(fileno=int(config["fd"]))
    _serve(sock, frozenset(config["formats"]), int(config["max_pixels"]), preprocess)


def _serve(
    sock: socket.socket,
    allowed_formats: frozenset[str],
    max_pixels: int,
    preprocess: Preprocess,
) -> None:
    """Worker main loop: one framed request in, one framed reply out, until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the parent drains first, then stops us
    sock.sendall(_HEADER.pack(0, _READY, 0.0, 0))
    stream = sock.makefile("rb")
    while True:
        header = stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # the parent closed the socket (or died)
        request_id, _, _, length = _HEADER.unpack(header)
        data = stream.read(length)
        if len(data) < length:
            return
        sock.sendall(_reply(request_id, data, allowed_formats, max_pixels, preprocess))


def _reply(
    request_id: int,
    data: bytes,
    allowed_formats: frozenset[str],
    max_pixels: int,
    preprocess: Preprocess,
) -> bytes:
    started = time.perf_counter()
    try:
        image = np.asarray(
            preprocess(data, allowed_formats=allowed_formats, max_pixels=max_pixels),
            dtype=np.float32,
        )
        if image.shape != IMAGE_SHAPE:
            raise ValueError(f"preprocessing returned shape {image.shape}, not {IMAGE_SHAPE}")
        kind, payload = _IMAGE, image.tobytes()
    except ServiceError as exc:
        kind, payload = _ERROR, _encode_error(exc)
    except Exception:  # a bug, never the client's fault: say so, keep serving
        traceback.print_exc()
        bug = ServiceError(_INTERNAL_STATUS, "internal_error", "internal server error")
        kind, payload = _ERROR, _encode_error(bug)
    seconds = time.perf_counter() - started
    return _HEADER.pack(request_id, kind, seconds, len(payload)) + payload


def _encode_error(exc: ServiceError) -> bytes:
    code = exc.code.encode()
    return _ERROR_HEAD.pack(exc.status_code, len(code)) + code + exc.message.encode()


def _error_classes() -> dict[str, type[ServiceError]]:
    """Fixed-code ServiceError subclasses by code, to raise the same class as in-process."""
    found: dict[str, type[ServiceError]] = {}
    pending: list[type[ServiceError]] = [ServiceError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        code = getattr(cls, "error_code", None)
        if isinstance(code, str) and not cls.__subclasses__():
            found.setdefault(code, cls)
    return found


_ERROR_CLASSES = _error_classes()


def _decode_error(payload: bytes) -> ServiceError:
    status, code_length = _ERROR_HEAD.unpack_from(payload)
    code = payload[_ERROR_HEAD.size : _ERROR_HEAD.size + code_length].decode()
    message = payload[_ERROR_HEAD.size + code_length :].decode()
    cls = _ERROR_CLASSES.get(code, ServiceError)
    exc = cls.__new__(cls)  # subclasses fix status/code in __init__; set the sent ones
    ServiceError.__init__(exc, status, code, message)
    return exc


# --- The parent side ----------------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    request_id: int
    frame: bytes
    future: asyncio.Future[np.ndarray]
    retried: bool = False


class _Worker(asyncio.Protocol):
    """One worker process and its socket, as seen from the event loop."""

    def __init__(
        self, pool: PreprocessPool, process: subprocess.Popen[bytes], sock: socket.socket
    ) -> None:
        self.pool = pool
        self.process = process
        self.sock = sock
        self.spawned_at = time.monotonic()
        self.head_started = self.spawned_at  # when the oldest unanswered request began
        self.outstanding: dict[int, _Request] = {}  # insertion order = the worker's order
        self.ready = False
        self.retired = False
        self._transport: asyncio.Transport | None = None
        self._backlog: list[bytes] = []
        self._buffer = bytearray()

    def track(self, request: _Request) -> None:
        """Count ``request`` as this worker's (its frame is written by the caller)."""
        if not self.outstanding and self.ready:
            self.head_started = time.monotonic()
        self.outstanding[request.request_id] = request

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
        offset, size = 0, _HEADER.size
        while len(buffer) - offset >= size:
            request_id, kind, seconds, length = _HEADER.unpack_from(buffer, offset)
            end = offset + size + length
            if len(buffer) < end:
                break
            self._on_frame(request_id, kind, seconds, bytes(buffer[offset + size : end]))
            offset = end
        if offset:
            del buffer[:offset]

    def _on_frame(self, request_id: int, kind: int, seconds: float, payload: bytes) -> None:
        if kind == _READY:
            self.ready = True
            self.head_started = time.monotonic()
            return
        request = self.outstanding.pop(request_id, None)
        self.head_started = time.monotonic()
        if request is None or request.future.done():  # timed out, or the caller went away
            return
        self.pool.observe(seconds)
        if kind == _IMAGE and len(payload) == _IMAGE_BYTES:
            request.future.set_result(np.frombuffer(payload, np.float32).reshape(IMAGE_SHAPE))
        elif kind == _ERROR:
            request.future.set_exception(_decode_error(payload))
        else:
            request.future.set_exception(RuntimeError(f"bad reply frame kind {kind}"))

    def eof_received(self) -> bool:
        return False  # close our end too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.pool.lost(self)

    def stop(self) -> None:
        """Kill the process and drop the socket (the worker is being replaced)."""
        self.retired = True
        if self.process.poll() is None:
            self.process.kill()
        self._drop_socket()

    def close_gracefully(self) -> None:
        """Tell the worker to exit after its current image: EOF on its socket."""
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


def _load(worker: _Worker) -> int:
    return _RETIRED_LOAD if worker.retired else len(worker.outstanding)


class PreprocessPool:
    """``workers`` spawned processes running ``preprocess``; results come back as futures."""

    def __init__(
        self,
        *,
        workers: int,
        allowed_formats: Collection[str],
        max_pixels: int,
        timeout_seconds: float,
        observe: Callable[[float], None] = lambda seconds: None,
        preprocess: Preprocess = preprocess_image,
    ) -> None:
        self._size = max(1, workers)
        self._formats = frozenset(allowed_formats)
        self._max_pixels = max_pixels
        self.timeout_seconds = timeout_seconds
        self.observe = observe
        self._preprocess = f"{preprocess.__module__}:{preprocess.__qualname__}"
        self._workers: list[_Worker] = []
        self._retired: list[subprocess.Popen[bytes]] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._next_id = 0
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids (for operators and tests)."""
        return [worker.process.pid for worker in self._workers if not worker.retired]

    async def start(self) -> None:
        """Spawn the workers; requests sent before they finished importing wait in the socket."""
        self._loop = asyncio.get_running_loop()
        self._workers = [self._spawn() for _ in range(self._size)]
        if self._connecting:
            await asyncio.gather(*self._connecting)
        self._schedule_watch()

    def preprocess(self, data: bytes) -> asyncio.Future[np.ndarray]:
        """The (28, 28) float32 image, or the ServiceError preprocess_image raised for it."""
        worker = self._pick()
        request = self._request(data)
        worker.track(request)
        worker.write(request.frame)
        return request.future

    def preprocess_many(self, items: Iterable[bytes]) -> list[asyncio.Future[np.ndarray]]:
        """One future per image, spread over the workers, one socket write per worker."""
        frames: dict[_Worker, list[bytes]] = {}
        futures: list[asyncio.Future[np.ndarray]] = []
        for data in items:
            worker = self._pick()
            request = self._request(data)
            worker.track(request)
            frames.setdefault(worker, []).append(request.frame)
            futures.append(request.future)
        for worker, parts in frames.items():
            worker.write(b"".join(parts))
        return futures

    def close(self) -> None:
        """Stop every worker: EOF first, a kill after SHUTDOWN_GRACE_S; fail what is left."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        for worker in self._workers:
            worker.close_gracefully()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for worker in self._workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("image worker %s did not stop in time; killed", worker.process.pid)
            worker.stop()
            worker.process.wait()
            self._fail_all(worker, NotReady("the service is shutting down"))
        for process in self._retired:
            process.wait()
        self._retired.clear()

    def lost(self, worker: _Worker) -> None:
        """A worker's socket closed: unless we retired it, the process died under an image."""
        if worker.retired:
            return
        logger.warning("image worker %s died; restarting", worker.process.pid)
        self._replace(worker, InvalidImage("the image crashed the decoder"))

    def _request(self, data: bytes) -> _Request:
        assert self._loop is not None, "start() the pool first"
        request_id = self._next_id
        self._next_id = (request_id + 1) % _ID_LIMIT
        frame = _HEADER.pack(request_id, _REQUEST, 0.0, len(data)) + data
        return _Request(request_id, frame, self._loop.create_future())

    def _pick(self) -> _Worker:
        worker = min(self._workers, key=_load)
        if worker.retired:  # every worker died while starting and waits for its backoff
            raise NotReady("the image workers are restarting; retry later")
        return worker

    def _spawn(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        config = {
            "fd": child_sock.fileno(),
            "formats": sorted(self._formats),
            "max_pixels": self._max_pixels,
            "preprocess": self._preprocess,
            "path": [entry for entry in sys.path if entry],
        }
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(config)],
            pass_fds=(child_sock.fileno(),),
            stdin=subprocess.DEVNULL,
            env={**os.environ, **_SINGLE_THREADED},
        )
        child_sock.close()
        worker = _Worker(self, process, parent_sock)
        task = asyncio.ensure_future(self._connect(worker))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return worker

    async def _connect(self, worker: _Worker) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: worker, worker.sock)
        except (OSError, ValueError):  # closed before it connected: retired or shutting down
            self.lost(worker)

    def _replace(self, worker: _Worker, head_error: ServiceError | None) -> None:
        """Kill ``worker``, start its successor, fail its current image, resend the others."""
        started = worker.ready  # one that never got ready died of itself, not of an image
        worker.stop()
        self._retired = [process for process in self._retired if process.poll() is None]
        self._retired.append(worker.process)
        pending = list(worker.outstanding.values())
        worker.outstanding.clear()
        if self._closed or not started:
            reason = "shutting down" if self._closed else "an image worker failed to start"
            for request in pending:
                _fail(request, NotReady(f"{reason}; retry later"))
            if not self._closed:
                assert self._loop is not None
                self._loop.call_later(RESTART_BACKOFF_S, self._respawn, worker)
            return
        self._respawn(worker)
        for position, request in enumerate(pending):
            if position == 0 and head_error is not None:
                _fail(request, head_error)
            elif request.retried:
                _fail(request, NotReady("image workers keep failing; retry later"))
            else:
                request.retried = True
                successor = self._pick()
                successor.track(request)
                successor.write(request.frame)

    def _respawn(self, worker: _Worker) -> None:
        if not self._closed:
            self._workers[self._workers.index(worker)] = self._spawn()

    def _schedule_watch(self) -> None:
        assert self._loop is not None
        interval = min(self.timeout_seconds * _WATCH_FRACTION, _WATCH_MAX_S)
        self._watch = self._loop.call_later(interval, self._check_timeouts)

    def _check_timeouts(self) -> None:
        """Watchdog: a worker past its deadline on one image is killed and replaced."""
        now = time.monotonic()
        for worker in list(self._workers):
            if not worker.outstanding:
                continue
            if worker.ready and now - worker.head_started > self.timeout_seconds:
                head_id = next(iter(worker.outstanding))
                request = worker.outstanding.pop(head_id)
                self.observe(now - worker.head_started)
                logger.warning(
                    "image worker %s timed out on an image; restarting", worker.process.pid
                )
                _fail(
                    request,
                    InvalidImage(
                        f"the image took longer than {self.timeout_seconds:g} s to decode"
                    ),
                )
                self._replace(worker, None)
            elif not worker.retired and not worker.ready:
                if now - worker.spawned_at > STARTUP_ALLOWANCE_S:
                    self._replace(worker, None)
        self._schedule_watch()

    def _fail_all(self, worker: _Worker, exc: ServiceError) -> None:
        for request in worker.outstanding.values():
            _fail(request, exc)
        worker.outstanding.clear()


def _fail(request: _Request, exc: ServiceError) -> None:
    if not request.future.done():
        request.future.set_exception(exc)
