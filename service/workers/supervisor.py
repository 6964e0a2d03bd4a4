"""Keeps the pool's worker processes running: spawns them, waits for their model, replaces
the ones that die or hang, and stops them on shutdown, or once a newer generation of workers
serves (``retire``: service/workers/generations.py).

An image past ``timeout_seconds`` of its worker's CPU (hangs.py), or one its worker crashed
under (a segfault, an abort), fails as ``invalid_image``; the worker is replaced, its other
inputs sent again, once. One killed from outside (SIGKILL: an operator, the OOM killer) blames
no image at once: its image is sent again, and fails only if it takes a second worker with it
(exits.py). A worker that dies before it is ready fails its inputs with 503 and is restarted
after ``RESTART_BACKOFF_S``. Workers ignore SIGINT/SIGTERM (the server drains, then stops
them) and exit when their socket closes, so a killed server leaves no orphans.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from typing import Any, Protocol

from service.contract import ModelInfo, ModelLoadError
from service.errors import InvalidImage, NotReady, ServiceError
from service.workers.connection import Pending, WorkerConnection, spawn
from service.workers.exits import crashed, describe, exit_status
from service.workers.hangs import HangWatch
from service.workers.pinned import Pinned
from service.workers.progress import IDLE
from service.workers.protocol import ReplyHead

logger = logging.getLogger("service.workers")

SHUTDOWN_GRACE_S = 2.0  # a worker finishing its current batch before it is killed
RETIRE_POLL_S = 0.01  # how often a retiring generation looks whether its work is done
STARTUP_ALLOWANCE_S = 60.0  # importing OpenCV, numpy and ONNX Runtime on a busy machine
RESTART_BACKOFF_S = 1.0  # a worker that dies while starting is not respawned in a tight loop
_WATCH_FRACTION = 0.25  # the watchdog looks this often per timeout...
_WATCH_MAX_S = 1.0  # ...and at least once a second


class Dispatcher(Protocol):
    """What the supervisor needs of the pool: replies, and the fate of a worker's inputs."""

    def on_reply(self, worker: WorkerConnection, head: ReplyHead, payload: bytes) -> None: ...

    def fail(self, worker: WorkerConnection | None, request: Pending, exc: ServiceError) -> None:
        """Answer ``request`` with ``exc`` (and stop counting it as ``worker``'s)."""

    def resend(self, request: Pending) -> None:
        """Send ``request`` again, to whichever worker is least busy now."""

    def replaced(self, reason: str, hung_for: float | None = None) -> None:
        """A worker is being replaced, for ``reason`` (of RESTART_REASONS; a metric), after
        ``hung_for`` seconds on one image when it hung."""


class Supervisor:
    """``size`` worker processes started from ``config``; the connections' listener."""

    def __init__(
        self, dispatcher: Dispatcher, size: int, config: dict[str, Any], timeout_seconds: float
    ) -> None:
        self.workers: list[WorkerConnection] = []
        self.size = max(1, size)
        self._dispatcher = dispatcher
        self.config = config
        self._pinned = Pinned(config["model"])  # a cleaner of /tmp may remove the model
        self._timeout = timeout_seconds
        self._hangs = HangWatch(timeout_seconds)
        self._retired: list[subprocess.Popen[bytes]] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.TimerHandle | None = None
        self.closed = False
        self.retiring = False  # replaced by a newer generation: finish, respawn nothing
        self.started = False  # every worker opened the model once: ``start`` returned

    async def start(self) -> ModelInfo:
        """Spawn the workers and wait until each has opened the model; the model they
        describe. Raises ModelLoadError (and stops them) when one cannot."""
        self._loop = asyncio.get_running_loop()
        try:
            for _ in range(self.size):  # one by one: a spawn failing midway stops the others
                self.workers.append(self._spawn())
            announced = asyncio.gather(*(worker.announced for worker in self.workers))
            infos = await asyncio.wait_for(announced, STARTUP_ALLOWANCE_S)
        except TimeoutError:
            self.close()
            raise ModelLoadError(
                f"the workers did not open the model within {STARTUP_ALLOWANCE_S:g} s"
            ) from None
        except BaseException:
            self.close()
            raise
        self._schedule_watch()
        self.started = True
        return infos[0]

    def close(self) -> None:
        """Stop every worker: EOF first, a kill after SHUTDOWN_GRACE_S; fail what is left."""
        if not self._begin_close():
            return
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for worker in self.workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self._finish_close()

    async def retire(self, drain_s: float) -> None:
        """Stop this generation once a newer one serves: the pool sends it nothing new, each
        worker answers what it was given (or ``drain_s`` passes), then they all stop, without
        blocking the event loop."""
        self.retiring = True
        deadline = time.monotonic() + drain_s
        while not self.closed and time.monotonic() < deadline:
            if not any(worker.outstanding for worker in self.workers):
                break
            await asyncio.sleep(RETIRE_POLL_S)
        left = sum(len(worker.outstanding) for worker in self.workers)
        if left and not self.closed:
            logger.warning(
                "a replaced worker generation still had %d inputs after %g s", left, drain_s
            )
        if not self._begin_close():
            return
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while time.monotonic() < deadline:
            if all(worker.process.poll() is not None for worker in self.workers):
                break
            await asyncio.sleep(RETIRE_POLL_S)
        self._finish_close()

    def _begin_close(self) -> bool:
        """EOF to every worker (they exit after their current batch); False if closed."""
        if self.closed:
            return False
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        for worker in self.workers:
            worker.close_gracefully()
        return True

    def _finish_close(self) -> None:
        """Kill what is still running, release the slots, fail what was never answered."""
        for worker in self.workers:
            if worker.process.poll() is None:
                logger.warning("worker %s did not stop in time; killed", worker.process.pid)
            worker.stop()
            worker.process.wait()
            worker.slot.close()
            for request in list(worker.outstanding.values()):
                self._dispatcher.fail(worker, request, NotReady("the service is shutting down"))
        for process in self._retired:
            process.wait()
        self._retired.clear()

    def on_reply(self, worker: WorkerConnection, head: ReplyHead, payload: bytes) -> None:
        self._dispatcher.on_reply(worker, head, payload)

    def on_lost(self, worker: WorkerConnection) -> None:
        """A worker's socket closed: unless we retired it, the process died."""
        if worker.retired:
            return
        status, pid = exit_status(worker.process), worker.process.pid
        if worker.ready:
            self._dispatcher.replaced("crashed" if crashed(status) else "killed")
            blamed = worker.blamed_request()
            logger.warning("worker %s died (%s); restarting", pid, describe(status), extra=blamed)
        elif self.started:
            self._dispatcher.replaced("failed_to_start")
            why, wait = worker.why_not_started(), RESTART_BACKOFF_S
            logger.warning("worker %s failed to start (%s); restarting in %g s", pid, why, wait)
        else:  # ``start`` fails with it (a load refused, or the service does not start)
            logger.warning("worker %s failed to start (%s)", pid, worker.why_not_started())
        culprit = InvalidImage("the image crashed the decoder")
        self._replace(worker, culprit, blame_at_once=crashed(status))

    def _spawn(self) -> WorkerConnection:
        assert self._loop is not None
        self._pinned.restore()
        worker = spawn(self, self.config, self._loop)
        task = self._loop.create_task(self._connect(worker))
        self._connecting.add(task)  # a task nobody references may be collected mid-way
        task.add_done_callback(self._connecting.discard)
        return worker

    async def _connect(self, worker: WorkerConnection) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(lambda: worker, worker.sock)
        except (OSError, ValueError):  # closed before it connected: retired or shutting down
            self.on_lost(worker)

    def _replace(
        self,
        worker: WorkerConnection,
        culprit_error: ServiceError | None,
        blame_at_once: bool = True,
    ) -> None:
        """Kill ``worker``, start its successor, fail the image it was decoding (if any; if
        not ``blame_at_once``, only when a worker was killed under that image before), send
        its other inputs again (once)."""
        started = worker.ready  # one that never got ready died of itself, not of an image
        progress = worker.slot.read()
        worker.stop()
        worker.slot.close()
        self._retired.append(worker.process)
        pending = list(worker.outstanding.values())
        for request in pending:
            worker.untrack(request.request_id)
        if self.closed or not started:
            reason = "shutting down" if self.closed else "a worker failed to start"
            for request in pending:
                self._dispatcher.fail(None, request, NotReady(f"{reason}; retry later"))
            if not self.closed:
                assert self._loop is not None
                self._loop.call_later(RESTART_BACKOFF_S, self._respawn, worker)
            return
        self._respawn(worker)
        decoding = progress.request_id if progress.since != IDLE else None
        for request in pending:
            culprit = culprit_error is not None and request.request_id == decoding
            if culprit and (blame_at_once or progress.index in request.killed_under):
                assert culprit_error is not None
                self._blame(request, progress.index, culprit_error)
            elif culprit:  # killed from outside under this image, a first time
                request.killed_under.add(progress.index)
                self._dispatcher.resend(request)
            elif request.retried:
                self._dispatcher.fail(None, request, NotReady("workers keep failing; retry later"))
            else:
                request.retried = True
                self._dispatcher.resend(request)

    def _blame(self, request: Pending, index: int, error: ServiceError) -> None:
        """The image at ``index`` of ``request`` crashed or hung its worker: it fails, and the
        rest of its frame is sent again without it (blanked out)."""
        images = request.images
        if images is None or len(images) == 1 or index >= len(images):
            self._dispatcher.fail(None, request, error)
            return
        request.overrides[index] = error
        images[index] = b""
        self._dispatcher.resend(request)

    def _respawn(self, worker: WorkerConnection) -> None:
        if self.closed or self.retiring:
            return
        try:
            successor = self._spawn()
        except OSError as exc:
            # Out of processes or descriptors for now (a flood of connections): the slot
            # would stay dead for good, so it is tried again, as for a worker that failed
            # to start; the other workers take its inputs meanwhile.
            logger.error("could not start a worker (%s); retrying in %g s", exc, RESTART_BACKOFF_S)
            assert self._loop is not None
            self._loop.call_later(RESTART_BACKOFF_S, self._respawn, worker)
            return
        self.workers[self.workers.index(worker)] = successor

    def _schedule_watch(self) -> None:
        assert self._loop is not None
        interval = min(self._timeout * _WATCH_FRACTION, _WATCH_MAX_S)
        self._watch = self._loop.call_later(interval, self._check_timeouts)

    def _check_timeouts(self) -> None:
        """Watchdog: a worker past the deadline on one image is killed and replaced; the
        killed ones that have exited are reaped (they stayed zombies until the next kill)."""
        self._retired = [process for process in self._retired if process.poll() is None]
        now, timeout = time.monotonic(), self._timeout
        for worker in list(self.workers):
            if worker.retired:
                continue
            if not worker.ready:
                if now - worker.spawned_at > STARTUP_ALLOWANCE_S:
                    logger.warning(
                        "worker %s did not start within %g s; restarting",
                        worker.process.pid,
                        STARTUP_ALLOWANCE_S,
                    )
                    self._dispatcher.replaced("failed_to_start")
                    self._replace(worker, None)
                continue
            progress = worker.slot.read()
            if not self._hangs.overdue(worker, progress, now):  # by its CPU (hangs.py)
                continue
            blamed = worker.blamed_request()
            logger.warning(
                "worker %s timed out on an image; restarting", worker.process.pid, extra=blamed
            )
            self._dispatcher.replaced("hung", now - progress.since if progress.since else None)
            self._replace(
                worker, InvalidImage(f"the image took longer than {timeout:g} s to decode")
            )
        self._schedule_watch()
