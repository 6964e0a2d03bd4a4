"""The worker pool, as the server sees it: decode, normalise and classify in worker processes.

Why processes: decoding and normalising an image is mostly Python/numpy glue that holds the
GIL for a few hundred microseconds, and a model-running thread beside the event loop waits
for the GIL several times per batch (service/batching.py says what that cost). So the server
process keeps one thread, the event loop, which only moves bytes; each worker process
(service/worker_main.py) decodes its images and runs its own ONNX Runtime session on the
batches it takes.

Workers are *spawned*: a fresh interpreter is exec'd (the parent has an ONNX Runtime session:
never fork it), without multiprocessing's re-import of ``__main__`` or its exit hook that joins
children. Each talks to the server over its own socketpair in fixed struct frames
(service/worker_protocol.py); the event loop's share of an image is one frame written, one
frame parsed and one future.

Admission: the pool counts the images sent and not yet answered; past ``max_queue_images`` a
request is refused at once (Overloaded: 503 + Retry-After) before anything is sent, so an
overloaded service neither queues without bound nor decodes what it will refuse.

Robustness: a worker writes which image it is decoding, and since when, into a progress slot
shared with the server. An image past ``timeout_seconds``, or one under which the worker died
(segfault, OOM kill), fails as ``invalid_image``; the worker is replaced and its other inputs
are sent again (once). A worker that dies before it is ready (a broken install, an unloadable
model) fails its requests with 503 and is restarted only after ``RESTART_BACKOFF_S``. Workers
ignore SIGINT/SIGTERM (the server drains, then stops them) and exit when their socket closes,
so a killed server leaves no orphans.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

from service import worker_protocol as wire
from service.errors import InvalidImage, NotReady, Overloaded, ServiceError
from service.metrics import Metrics
from service.model import ModelSpec

logger = logging.getLogger("service.workers")

SHUTDOWN_GRACE_S = 2.0  # a worker finishing its current batch before it is killed
STARTUP_ALLOWANCE_S = 60.0  # importing OpenCV, numpy and ONNX Runtime on a busy machine
_WATCH_FRACTION = 0.25  # the watchdog looks this often per timeout...
_WATCH_MAX_S = 1.0  # ...and at least once a second
# Set before numpy loads: the pool is the parallelism. With OpenBLAS's default thread per
# core in every worker, two workers decoding photos took 13 ms an image instead of 2.7 ms.
_SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RESTART_BACKOFF_S = 1.0  # a worker that dies while starting is not respawned in a tight loop
_RETIRED_LOAD = sys.maxsize  # a dead worker is never the least busy
# The worker's first statements: ignore the signals before the slow imports, then serve.
BOOT = (
    "import signal, sys, json; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "config = json.loads(sys.argv[1]); sys.path[:0] = config['path']; "
    "from service.worker_main import worker_main; worker_main(config)"
)
DEFAULT_PREPROCESS = "service.preprocessing:preprocess_steps"


@dataclass(frozen=True, slots=True)
class Result:
    """Class probabilities (count, 10); for an encoded image, optionally the 28x28 it became."""

    probabilities: np.ndarray
    image: np.ndarray | None = None


@dataclass(slots=True)
class _Request:
    request_id: int
    frame: bytes
    count: int  # images, for admission
    with_image: bool
    encoded: bool  # decoded by the worker (its decode time is a metric)
    future: asyncio.Future[Result]
    retried: bool = False


class _Worker(asyncio.Protocol):
    """One worker process, its socket and its progress slot, as seen from the event loop."""

    def __init__(
        self,
        pool: WorkerPool,
        process: subprocess.Popen[bytes],
        sock: socket.socket,
        slot: wire.ProgressSlot,
    ) -> None:
        self.pool = pool
        self.process = process
        self.sock = sock
        self.slot = slot
        self.spawned_at = time.monotonic()
        self.outstanding: dict[int, _Request] = {}  # insertion order = the worker's order
        self.images = 0  # images outstanding: the load the pool balances
        self.ready = False
        self.retired = False
        self._transport: asyncio.Transport | None = None
        self._backlog: list[bytes] = []
        self._buffer = bytearray()

    def track(self, request: _Request) -> None:
        """Count ``request`` as this worker's (its frame is written by the caller)."""
        self.outstanding[request.request_id] = request
        self.images += request.count

    def untrack(self, request_id: int) -> _Request | None:
        request = self.outstanding.pop(request_id, None)
        if request is not None:
            self.images -= request.count
        return request

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
        offset, size = 0, wire.REPLY.size
        while len(buffer) - offset >= size:
            fields = wire.REPLY.unpack_from(buffer, offset)
            end = offset + size + fields[-1]
            if len(buffer) < end:
                break
            self.pool.on_reply(self, fields, bytes(buffer[offset + size : end]))
            offset = end
        if offset:
            del buffer[:offset]

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


def _load(worker: _Worker) -> int:
    return _RETIRED_LOAD if worker.retired else worker.images


@dataclass
class PoolOptions:
    """How the workers decode, batch and admit (the Settings fields they come from)."""

    workers: int
    model: ModelSpec
    allowed_formats: Collection[str] = frozenset({"PNG", "JPEG"})
    max_pixels: int = 40_000_000
    timeout_seconds: float = 10.0
    max_batch_size: int = 32
    max_delay_us: int = 0
    max_queue_images: int = 1024
    overflow_backlog_images: int = 0  # 0: no overflow worker, all take work alike
    retry_after_seconds: int = 1
    preprocess: str = DEFAULT_PREPROCESS  # "module:function"; tests inject stand-ins


class WorkerPool:
    """``workers`` spawned processes that turn images into class probabilities, as futures."""

    def __init__(self, options: PoolOptions, metrics: Metrics | None = None) -> None:
        self.options = options
        self._metrics = metrics
        self._size = max(1, options.workers)
        self._workers: list[_Worker] = []
        self._retired: list[subprocess.Popen[bytes]] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._next_id = 0
        self._in_flight = 0  # images sent and not yet answered
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids (for operators and tests)."""
        return [worker.process.pid for worker in self._workers if not worker.retired]

    @property
    def queued_images(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        """Spawn the workers; requests sent before they are ready wait in their sockets."""
        self._loop = asyncio.get_running_loop()
        self._workers = [self._spawn() for _ in range(self._size)]
        if self._connecting:
            await asyncio.gather(*self._connecting)
        self._schedule_watch()

    def classify(self, data: bytes, with_image: bool = False) -> asyncio.Future[Result]:
        """Probabilities (1, 10) for one encoded image, or the ServiceError it earned."""
        return self.classify_many([data], with_image)[0]

    def classify_many(
        self, items: Iterable[bytes], with_image: bool = False
    ) -> list[asyncio.Future[Result]]:
        """One future per encoded image, spread over the workers, one write per worker.
        All are admitted or none (Overloaded, raised before anything is sent)."""
        items = list(items)
        self._admit(len(items))
        flags = wire.WITH_IMAGE if with_image else 0
        requests = [self._request(wire.ENCODED, flags, 1, data) for data in items]
        self._send(requests)
        return [request.future for request in requests]

    def classify_tensor(self, images: np.ndarray) -> asyncio.Future[Result]:
        """Probabilities (n, 10) for float32 images (n, 1, 28, 28) that need no decoding."""
        count = int(images.shape[0])
        self._admit(count)
        data = np.ascontiguousarray(images, dtype=np.float32).tobytes()
        request = self._request(wire.TENSOR, 0, count, data)
        self._send([request])
        return request.future

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
                logger.warning("worker %s did not stop in time; killed", worker.process.pid)
            worker.stop()
            worker.process.wait()
            worker.slot.close()
            for request in list(worker.outstanding.values()):
                self._fail(worker, request, NotReady("the service is shutting down"))
        for process in self._retired:
            process.wait()
        self._retired.clear()

    # --- replies and failures ------------------------------------------------------------

    def on_reply(self, worker: _Worker, fields: tuple[Any, ...], payload: bytes) -> None:
        request_id, kind, batch_size, decode_s, wait_s, model_s, _ = fields
        if kind == wire.READY:
            worker.ready = True
            return
        request = worker.untrack(request_id)
        if request is None:  # timed out and already answered
            return
        self._in_flight -= request.count
        self._observe(request, kind, batch_size, decode_s, wait_s, model_s)
        if request.future.done():  # the caller went away
            return
        if kind == wire.RESULT:
            request.future.set_result(_result(request, payload))
        elif kind == wire.ERROR:
            request.future.set_exception(wire.decode_error(payload))
        else:
            request.future.set_exception(RuntimeError(f"bad reply frame kind {kind}"))

    def lost(self, worker: _Worker) -> None:
        """A worker's socket closed: unless we retired it, the process died."""
        if worker.retired:
            return
        logger.warning("worker %s died; restarting", worker.process.pid)
        self._replace(worker, InvalidImage("the image crashed the decoder"))

    def _observe(
        self,
        request: _Request,
        kind: int,
        batch_size: int,
        decode_s: float,
        wait_s: float,
        model_s: float,
    ) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        if request.encoded:
            metrics.preprocess_duration.observe(decode_s)  # refused images count too
        if kind == wire.RESULT:
            metrics.queue_wait.observe(wait_s)
        if batch_size:
            metrics.batch_size.observe(batch_size)
            metrics.inference_duration.observe(model_s)

    def _fail(self, worker: _Worker | None, request: _Request, exc: ServiceError) -> None:
        if worker is not None:
            worker.untrack(request.request_id)
        self._in_flight -= request.count
        if not request.future.done():
            request.future.set_exception(exc)

    # --- sending -------------------------------------------------------------------------

    def _admit(self, count: int) -> None:
        if self._closed:
            raise NotReady("the service is shutting down")
        limit = self.options.max_queue_images
        if self._in_flight + count <= limit:
            self._in_flight += count
            return
        if self._metrics is not None:
            self._metrics.rejected.labels("overloaded").inc(count)
        raise Overloaded(
            f"inference queue full ({self._in_flight} of {limit} images waiting); retry later",
            self.options.retry_after_seconds,
        )

    def _request(self, kind: int, flags: int, count: int, data: bytes) -> _Request:
        assert self._loop is not None, "start() the pool first"
        request_id = self._next_id
        self._next_id = (request_id + 1) % wire.ID_LIMIT
        head = wire.REQUEST.pack(request_id, kind, flags, count, time.monotonic(), len(data))
        return _Request(
            request_id,
            head + data,
            count,
            bool(flags & wire.WITH_IMAGE),
            kind == wire.ENCODED,
            self._loop.create_future(),
        )

    def _send(self, requests: list[_Request]) -> None:
        if all(worker.retired for worker in self._workers):
            error = NotReady("the workers are restarting; retry later")
            for request in requests:
                self._fail(None, request, error)
            raise error
        frames: dict[_Worker, list[bytes]] = {}
        for request in requests:
            worker = self._pick()
            worker.track(request)
            frames.setdefault(worker, []).append(request.frame)
        for worker, parts in frames.items():
            worker.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def _pick(self) -> _Worker:
        """The least busy worker, the overflow worker (the last) only when every other one
        has ``overflow_backlog_images`` waiting: at full single-image load the event loop
        needs a whole core, and a worker on it cost /predict 7 % of its req/s and doubled its
        p99 (2 cores); bulk work leaves the loop mostly idle, and the overflow doubles it."""
        workers, backlog = self._workers, self.options.overflow_backlog_images
        primaries = workers[:-1] if backlog and len(workers) > 1 else workers
        worker = min(primaries, key=_load)
        if primaries is not workers and _load(worker) >= backlog:  # retired counts as full
            worker = min(workers, key=_load)
        if worker.retired:  # every worker died while starting and waits for its backoff
            raise NotReady("the workers are restarting; retry later")
        return worker

    # --- processes -----------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        options = self.options
        parent_sock, child_sock = socket.socketpair()
        slot, slot_fd = wire.ProgressSlot.new()
        config = {
            "fd": child_sock.fileno(),
            "progress_fd": slot_fd,
            "formats": sorted(options.allowed_formats),
            "max_pixels": options.max_pixels,
            "max_batch_size": options.max_batch_size,
            "max_delay_us": options.max_delay_us,
            "model": asdict(options.model),
            "preprocess": options.preprocess,
            "path": [entry for entry in sys.path if entry],
        }
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", BOOT, json.dumps(config)],
                pass_fds=(child_sock.fileno(), slot_fd),
                stdin=subprocess.DEVNULL,
                env={**os.environ, **_SINGLE_THREADED},
            )
        finally:
            child_sock.close()
            os.close(slot_fd)
        worker = _Worker(self, process, parent_sock, slot)
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

    def _replace(self, worker: _Worker, culprit_error: ServiceError | None) -> None:
        """Kill ``worker``, start its successor, fail the image it was decoding (if any),
        send its other inputs again (once)."""
        started = worker.ready  # one that never got ready died of itself, not of an image
        progress = worker.slot.read()
        worker.stop()
        worker.slot.close()
        self._retired = [process for process in self._retired if process.poll() is None]
        self._retired.append(worker.process)
        pending = list(worker.outstanding.values())
        for request in pending:
            worker.untrack(request.request_id)
        if self._closed or not started:
            reason = "shutting down" if self._closed else "a worker failed to start"
            for request in pending:
                self._fail(None, request, NotReady(f"{reason}; retry later"))
            if not self._closed:
                assert self._loop is not None
                self._loop.call_later(RESTART_BACKOFF_S, self._respawn, worker)
            return
        self._respawn(worker)
        decoding = progress.request_id if progress.since != wire.IDLE else None
        for request in pending:
            if culprit_error is not None and request.request_id == decoding:
                self._fail(None, request, culprit_error)
            elif request.retried:
                self._fail(None, request, NotReady("workers keep failing; retry later"))
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
        interval = min(self.options.timeout_seconds * _WATCH_FRACTION, _WATCH_MAX_S)
        self._watch = self._loop.call_later(interval, self._check_timeouts)

    def _check_timeouts(self) -> None:
        """Watchdog: a worker past the deadline on one image is killed and replaced."""
        now, timeout = time.monotonic(), self.options.timeout_seconds
        for worker in list(self._workers):
            if worker.retired:
                continue
            if not worker.ready:
                if now - worker.spawned_at > STARTUP_ALLOWANCE_S:
                    self._replace(worker, None)
                continue
            progress = worker.slot.read()
            if progress.since == wire.IDLE or now - progress.since <= timeout:
                continue
            logger.warning("worker %s timed out on an image; restarting", worker.process.pid)
            request = worker.outstanding.get(progress.request_id)
            if request is not None:
                if self._metrics is not None:
                    self._metrics.preprocess_duration.observe(now - progress.since)
                limit = f"{timeout:g} s"
                error = InvalidImage(f"the image took longer than {limit} to decode")
                self._fail(worker, request, error)
            self._replace(worker, None)
        self._schedule_watch()


def _result(request: _Request, payload: bytes) -> Result:
    rows = request.count * wire.CLASSES
    probabilities = np.frombuffer(payload, np.float32, rows).reshape(request.count, wire.CLASSES)
    image = None
    if request.with_image:
        offset = rows * wire.FLOAT_BYTES
        image = np.frombuffer(payload, np.float32, wire.IMAGE_FLOATS, offset).reshape(
            wire.SIDE, wire.SIDE
        )
    return Result(probabilities, image)
