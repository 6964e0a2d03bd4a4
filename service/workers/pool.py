"""The worker pool, as the server sees it: images in, class probabilities out, as futures.

Why processes: decoding an image is mostly Python and numpy glue that holds the GIL, which a
model thread beside the event loop would wait for several times per batch. So the server
keeps one thread, the event loop, which only moves bytes; each worker process (process.py)
decodes its images and runs its own ONNX Runtime session on the batches it takes, and the
supervisor (supervisor.py) keeps them alive. The loop's share of an image: one frame written,
one parsed and one future.

Admission: past ``max_queue_images`` sent and not yet answered, a request is refused at once
(503 + Retry-After) before anything is sent: no queue without bound, no decoding for nothing.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.contract import ModelInfo, ModelSpec
from service.errors import NotReady, Overloaded, ServiceError
from service.workers import protocol as wire
from service.workers.connection import Pending, WorkerConnection
from service.workers.extras import TRACE_CONTEXT_SIZE
from service.workers.generations import Generations
from service.workers.protocol import ImageResults, ReplyHead, RequestHead
from service.workers.results import Chunk, TensorResults, decode_reply
from service.workers.supervisor import Supervisor

if TYPE_CHECKING:
    from service.metrics import Metrics

_RETIRED_LOAD = sys.maxsize  # a dead worker is never the least busy
DEFAULT_STEPS = "service.imaging.pipeline:preprocess_steps"


@dataclass
class PoolOptions:
    """How the workers decode, batch and admit. Made from the settings only
    (service.predictor.pool_options), so no default here can disagree with theirs."""

    workers: int
    model: ModelSpec
    allowed_formats: Collection[str]
    max_pixels: int
    max_batch_pixels: int  # decoded by one request's images in one model call
    timeout_seconds: float
    max_batch_size: int
    max_delay_us: int
    max_queue_images: int
    overflow_backlog_images: int  # 0: no overflow worker, all take work alike
    overflow_wait_seconds: float  # ...or once every other worker's oldest frame waited this long
    retry_after_seconds: int
    log_level: str
    shadow_model: ModelSpec | None  # service/workers/shadow.py
    shadow_sample_rate: float
    steps: str = DEFAULT_STEPS  # "module:function" of the image stages; tests inject stand-ins


def _load(worker: WorkerConnection) -> int:
    return _RETIRED_LOAD if worker.retired else worker.images


def _waiting_since(worker: WorkerConnection) -> float:
    """When (monotonic) the oldest frame ``worker`` has not answered was made; inf if none."""
    for request in worker.outstanding.values():  # insertion order: the oldest first
        return request.created
    return math.inf


class WorkerPool:
    """``workers`` spawned processes that turn images into class probabilities, as futures."""

    def __init__(self, options: PoolOptions, metrics: Metrics | None = None) -> None:
        self.options = options
        self.metrics = metrics
        config: dict[str, Any] = {
            "formats": sorted(options.allowed_formats),
            "max_pixels": options.max_pixels,
            "max_batch_pixels": max(options.max_batch_pixels, options.max_pixels),
            "max_batch_size": options.max_batch_size,
            "max_delay_us": options.max_delay_us,
            "model": asdict(options.model),
            "steps": options.steps,
            "log_level": options.log_level,
            "shadow": options.shadow_model
            and {"model": asdict(options.shadow_model), "sample_rate": options.shadow_sample_rate},
        }
        self._generations = Generations(self, options.workers, config, options.timeout_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0
        self._in_flight = 0  # images sent and not yet answered

    @property
    def pids(self) -> list[int]:  # the live workers' process ids (for operators and tests)
        return [w.process.pid for w in self._supervisor.workers if not w.retired]

    def serving(self) -> bool:  # a worker of the current generation has its model open
        return any(w.ready and not w.retired for w in self._supervisor.workers)

    @property
    def queued_images(self) -> int:  # admitted and not yet answered
        return self._in_flight

    async def start(self) -> ModelInfo:
        """Spawn the workers; the model they opened (ModelLoadError, all stopped, if one can't)."""
        self._loop = asyncio.get_running_loop()
        return await self._supervisor.start()

    @property
    def _supervisor(self) -> Supervisor:
        """The generation of workers that takes new inputs."""
        return self._generations.current

    @property
    def model(self) -> ModelSpec:
        """The model file the current generation of workers opened."""
        return self._generations.model

    async def reload(self, model: ModelSpec) -> ModelInfo:
        """Serve ``model`` from a new generation of workers, with no input lost or refused
        (service/workers/generations.py); ModelLoadError leaves the old one serving."""
        return await self._generations.reload(model)

    def classify(
        self, data: bytes, flags: int = 0, trace: bytes | None = None
    ) -> asyncio.Future[ImageResults]:
        """The answer for one encoded image (a frame of one)."""
        return self.classify_many([data], flags, trace)[0].future

    def classify_many(
        self, items: Sequence[bytes], flags: int = 0, trace: bytes | None = None
    ) -> list[Chunk]:
        """The images in frames of at most a model call's worth each, spread over the workers,
        one write per worker; the chunks follow the items' order. All are admitted or none
        (Overloaded, raised before anything is sent). ``flags``: what the frames ask for
        besides the answers; ``trace``: the request's trace context (TRACED frames)."""
        self._admit(len(items))
        size = min(self.options.max_batch_size, -(-len(items) // self._supervisor.size))
        requests = [
            self._request(wire.ENCODED, flags, list(items[start : start + size]), trace=trace)
            for start in range(0, len(items), size)
        ]
        self._send(requests)
        return [Chunk(request.count, request.future) for request in requests]

    def classify_tensor(self, images: np.ndarray) -> asyncio.Future[TensorResults]:
        """Probabilities (n, 10) for float32 images (n, 1, 28, 28) that need no decoding."""
        count = int(images.shape[0])
        self._admit(count)
        data = np.ascontiguousarray(images, dtype=np.float32).tobytes()
        request = self._request(wire.TENSOR, 0, data, count)
        self._send([request])
        return request.future

    def close(self) -> None:
        """Stop every worker after its current batch; what is left fails with 503."""
        self._generations.close()

    # --- replies and failures (the supervisor's Dispatcher) ------------------------------

    def on_reply(self, worker: WorkerConnection, head: ReplyHead, payload: bytes) -> None:
        if head.kind == wire.SHADOW:  # a report on answers already sent, not an answer
            if self.metrics is not None:
                self.metrics.observe_shadow(wire.decode_shadow(head, payload))
            return
        if head.batch_size:  # the first reply of a model call; the call's others follow it
            worker.call_size, worker.call_seconds = head.batch_size, head.model_s
        request = worker.untrack(head.request_id)
        if request is None:  # timed out and already answered
            return
        self._in_flight -= request.count
        metrics = self.metrics
        if metrics is not None and head.batch_size:
            metrics.batch_size.observe(head.batch_size)
            metrics.inference_duration.observe(head.model_s)
            metrics.statistics.execution(worker.model, head.batch_size, head.model_s)
        answer = decode_reply(request, worker, head, payload)
        if metrics is not None and not isinstance(answer, BaseException):
            metrics.observe_answer(answer, worker.model, worker.call_size)
        if not request.future.done():  # else the caller went away
            if isinstance(answer, BaseException):
                request.future.set_exception(answer)
            else:
                request.future.set_result(answer)

    def fail(self, worker: WorkerConnection | None, request: Pending, exc: ServiceError) -> None:
        if worker is not None:
            worker.untrack(request.request_id)
        self._in_flight -= request.count
        if not request.future.done():
            request.future.set_exception(exc)

    def resend(self, request: Pending) -> None:
        """Send ``request`` again (its worker died); it fails with NotReady when no worker can
        take it, never raising into the loop that sends a dead worker's other inputs."""
        try:
            worker = self._pick()
        except NotReady as exc:
            self.fail(None, request, exc)
            return
        if request.images is not None:  # an image may have been blanked out (overrides)
            head = RequestHead.unpack_from(request.frame)
            payload = wire.pack_images(request.images)
            if head.flags & wire.TRACED:  # the trace context stays the frame's end
                payload += request.frame[-TRACE_CONTEXT_SIZE:]
            request.frame = head._replace(length=len(payload)).pack() + payload
        worker.track(request)
        worker.write(request.frame)

    def replaced(self, reason: str, hung_for: float | None = None) -> None:
        if self.metrics is not None:
            self.metrics.worker_replaced(reason, hung_for)

    # --- sending -------------------------------------------------------------------------

    def _admit(self, count: int) -> None:
        self.check_room(count)
        self._in_flight += count

    def check_room(self, count: int) -> None:
        """Raise NotReady or Overloaded (counted) unless ``count`` more images fit now (for a
        request whose images are sent later: explained ones)."""
        if self._supervisor.closed:
            raise NotReady("the service is shutting down")
        limit = self.options.max_queue_images
        if self._in_flight + count <= limit:
            return
        if self.metrics is not None:
            self.metrics.rejected.labels("overloaded").inc(count)
        raise Overloaded(
            f"inference queue full ({self._in_flight} of {limit} images waiting); retry later",
            self.options.retry_after_seconds,
        )

    def _request(
        self,
        kind: int,
        flags: int,
        data: bytes | list[bytes],
        count: int = 0,
        trace: bytes | None = None,
    ) -> Pending:
        """A frame of ``data``: encoded images (a list), or a tensor of ``count`` images;
        ``trace`` (a trace context) ends a TRACED frame."""
        assert self._loop is not None, "start() the pool first"
        request_id = self._next_id
        self._next_id = (request_id + 1) % wire.ID_LIMIT
        images = data if isinstance(data, list) else None
        if images is not None:
            data, count = wire.pack_images(images), len(images)
        if trace is not None:
            data, flags = data + trace, flags | wire.TRACED  # type: ignore[operator]
        head = RequestHead(request_id, kind, flags, count, time.monotonic(), len(data))
        return Pending(
            request_id,
            head.pack() + data,  # type: ignore[operator]
            count,
            flags,
            self._loop.create_future(),
            images,
        )

    def _send(self, requests: list[Pending]) -> None:
        if all(worker.retired for worker in self._supervisor.workers):
            # Admitted but never sent: undo the admission and raise. Failing the frames'
            # futures as well left errors nobody reads (asyncio logs each one).
            self._in_flight -= sum(request.count for request in requests)
            raise NotReady("the workers are restarting; retry later")
        frames: dict[WorkerConnection, list[bytes]] = {}
        for request in requests:
            worker = self._pick()
            worker.track(request)
            frames.setdefault(worker, []).append(request.frame)
        for worker, parts in frames.items():
            worker.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def _pick(self) -> WorkerConnection:
        """The least busy worker (by images, and by bytes: connection.py's track), the overflow
        worker (the last) only when every other one has ``overflow_backlog_images`` of load or
        a frame waiting ``overflow_wait_seconds``: at full single-image load the event loop
        needs a whole core; bulk work and large photos leave it mostly idle, and the overflow
        worker adds a core to it (docs/performance.md)."""
        workers, backlog = self._supervisor.workers, self.options.overflow_backlog_images
        primaries = workers[:-1] if backlog and len(workers) > 1 else workers
        worker = min(primaries, key=_load)
        if primaries is not workers and (  # retired counts as full
            _load(worker) >= backlog
            or time.monotonic() - _waiting_since(worker) >= self.options.overflow_wait_seconds
        ):
            worker = min(workers, key=_load)
        if worker.retired:  # every worker died while starting and waits for its backoff
            raise NotReady("the workers are restarting; retry later")
        return worker
