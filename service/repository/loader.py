"""Loading a model while the service serves: check it, then swap the workers over.

A load (``POST /v2/repository/models/{name}/load``, or SIGHUP) takes the file at
DIGITS_MODEL_PATH or an uploaded one and, one load at a time:

1. pins a private copy of it (service/repository/staging.py);
2. checks it in a child process (service/repository/gate.py): the contract, outputs that are
   probabilities, and the accuracy floor on the check digits;
3. starts a new generation of workers on it beside the serving one and switches new inputs
   over once all are ready (service/workers/generations.py);
4. tells the app, in the same event-loop step, so /model, the V2 metadata and
   digits_model_info name the new model from the first request that used it.

Any refusal or failure leaves the model that was serving untouched, and says why.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from service.contract import ModelInfo, ModelLoadError, ModelSpec, v2_version
from service.errors import NotReady, quoted
from service.repository import gate
from service.repository.gate import GateRequest
from service.repository.staging import Staging
from service.workers.pool import WorkerPool

SignalHandler = Callable[[int, FrameType | None], Any] | int | None  # signal.getsignal's

logger = logging.getLogger("service.repository")


class LoadRefused(Exception):
    """A load that did not happen; the model served before still serves. ``status_code``:
    400 the file fails a check, 409 another load is running, 503 the workers could not
    start it or the service is stopping."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class LoadOutcome:
    info: ModelInfo
    previous: ModelInfo
    accuracy: float | None  # on the check digits; None when the file was already serving
    digits: int
    seconds: float

    @property
    def changed(self) -> bool:
        return self.info.sha256 != self.previous.sha256


@dataclass(frozen=True)
class Addressed:
    """What a load request names: the model (its routes' name) and, for an uploaded file,
    the V2 version Triton's ``file:<version>/model.onnx`` gives it (None: any). A SIGHUP
    addresses nothing and serves what the file names."""

    name: str
    version: str | None = None

    def mismatch(self, name: str, version: str) -> str | None:
        """Why a file whose metadata says ``name`` and ``version`` is not what was addressed."""
        if name != self.name:
            # Its routes would move to /v2/models/<its name>: every client of this one
            # would get 404 from a load addressed to it (Triton loads the model named).
            return (
                f"its model is named {quoted(name)}, not {quoted(self.name)}, and a load "
                "keeps the name the model's routes are addressed by"
            )
        served = v2_version(version)
        if self.version is not None and int(self.version) != int(served):
            # Served as its own version, a client that loaded "version 3" would find version
            # 3 not ready and the answers naming another.
            return (
                f"its metadata says version {quoted(version)}, served as V2 version "
                f"{served}, not {self.version} as its parameter names it: send it as "
                f"'file:{served}/model.onnx'"
            )
        return None


class ModelLoader:
    """The served model's file and how to replace it (one load at a time)."""

    def __init__(
        self,
        pool: WorkerPool,
        source: ModelSpec,
        staging: Staging,
        check_digits: Path,
        min_accuracy: float,
        on_switch: Callable[[ModelInfo], None],
        on_outcome: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._pool = pool
        self._source = source  # DIGITS_MODEL_PATH (and card): what a body-less load reads
        self._staging = staging
        self._check_digits = check_digits
        self._min_accuracy = min_accuracy
        self._on_switch = on_switch
        self._on_outcome = on_outcome  # "loaded", "unchanged", "refused", "failed", "busy"
        self._lock = asyncio.Lock()
        self._signal_tasks: set[asyncio.Task[None]] = set()
        self._signal_queued = False  # a SIGHUP waits for the running load
        self._handler_before: SignalHandler = None  # SIGHUP's, before install_signal
        self.current: ModelInfo | None = None
        # Why the latest load was refused, until one succeeds (the index shows it: a SIGHUP
        # has no answer to carry it).
        self.last_refusal: str | None = None

    @property
    def loading(self) -> bool:
        return self._lock.locked()

    async def load(
        self, upload: bytes | None = None, addressed: Addressed | None = None
    ) -> LoadOutcome:
        """Serve ``upload`` (an ONNX file), or with None the file at DIGITS_MODEL_PATH as it is
        now; ``addressed``: what a request named, which the file must be. Raises LoadRefused
        with the old model still serving."""
        if self._lock.locked():
            self._on_outcome("busy")
            raise LoadRefused("another model load is in progress; retry when it is done", 409)
        async with self._lock:
            try:
                outcome = await self._load(upload, addressed)
            except LoadRefused as exc:
                if exc.status_code == 400:
                    self.refused(exc.message)
                else:
                    self.last_refusal = exc.message
                    self._on_outcome("failed")
                raise
        self.last_refusal = None
        self._on_outcome("loaded" if outcome.changed else "unchanged")
        return outcome

    def refused(self, reason: str) -> None:
        """A load refused before it reached the loader (its request's body: not JSON, a
        parameter it cannot take, a file over the size limit): counted and listed in the
        index as the loader's own refusals are."""
        self.last_refusal = reason
        self._on_outcome("refused")

    async def _load(self, upload: bytes | None, addressed: Addressed | None) -> LoadOutcome:
        started = time.monotonic()
        previous = self.current
        if previous is None:
            raise LoadRefused("the service is not ready yet", 503)
        label = "the uploaded file" if upload is not None else self._source.path
        try:
            if upload is None:
                spec = await asyncio.to_thread(self._staging.pin, self._source)
            else:
                spec = await asyncio.to_thread(self._staging.store, upload, self._source)
        except ModelLoadError as exc:  # the file cannot be read
            raise LoadRefused(f"{label}: {exc}") from exc
        except OSError as exc:  # the service cannot write its copy: no fault of the file's
            raise LoadRefused(f"{label}: could not keep a private copy of it: {exc}", 503) from exc
        serving = self._pool.model
        if spec.path == serving.path:  # the same bytes: nothing to do
            mismatch = addressed and addressed.mismatch(previous.name, previous.version)
            if mismatch:
                raise LoadRefused(f"{label}: {mismatch}")
            return LoadOutcome(previous, previous, None, 0, time.monotonic() - started)
        try:
            accuracy, digits = await self._check(spec, addressed)
            info = await self._pool.reload(spec)
        except (ModelLoadError, NotReady) as exc:
            self._staging.release(spec, keep=self._pool.model)
            reason = str(exc).replace(spec.path, label)
            reason = reason if label in reason else f"{label}: {reason}"
            logger.warning("model load refused: %s", reason, extra={"model_path": label})
            raise LoadRefused(reason, 400 if isinstance(exc, RefusedFile) else 503) from exc
        self.current = info
        self._on_switch(info)  # same event-loop step as the switch: no request in between
        self._staging.release(serving, keep=spec)
        outcome = LoadOutcome(info, previous, accuracy, digits, time.monotonic() - started)
        logger.info(
            "model %s %s now serves (was %s %s); %.1f%% on %d check digits; %.1f s",
            info.name,
            info.version,
            previous.name,
            previous.version,
            100 * accuracy,
            digits,
            outcome.seconds,
            extra={"model_path": label, "sha256": info.sha256},
        )
        return outcome

    async def _check(self, spec: ModelSpec, addressed: Addressed | None) -> tuple[float, int]:
        """The gate's (accuracy, check digits) for ``spec`` (service/repository/gate.py), in a
        child process; a file that is not what the request ``addressed`` is refused."""
        request = GateRequest(spec, str(self._check_digits), self._min_accuracy)
        process = await asyncio.create_subprocess_exec(
            *gate.child("service.repository.gate", request.to_json()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), gate.TIMEOUT_S)
            report = gate.outcome(process.returncode, out, err)
            info = report["info"]
            mismatch = addressed and addressed.mismatch(str(info["name"]), str(info["version"]))
            if mismatch:
                raise RefusedFile(mismatch)
            return float(report["accuracy"]), int(report["digits"])
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RefusedFile(gate.TIMED_OUT) from None
        except (ModelLoadError, KeyError, TypeError, ValueError) as exc:
            raise RefusedFile(str(exc)) from exc

    # --- SIGHUP: the same as a body-less load ----------------------------------------------

    def install_signal(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Reload on SIGHUP (whose default action would kill the process); False where
        signals cannot be handled here (not the main thread, as under a test client)."""
        try:
            before = signal.getsignal(signal.SIGHUP)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (ValueError, RuntimeError, NotImplementedError):
            return False
        self._handler_before = before
        return True

    def remove_signal(self, loop: asyncio.AbstractEventLoop) -> None:
        """The handler found at install back: the loop's removal sets SIGHUP's default,
        which ends the process, while it drains its last requests."""
        try:
            loop.remove_signal_handler(signal.SIGHUP)
            if self._handler_before is not None:
                signal.signal(signal.SIGHUP, self._handler_before)
        except (ValueError, RuntimeError, NotImplementedError):
            pass

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_from_signal())
        self._signal_tasks.add(task)
        task.add_done_callback(self._signal_tasks.discard)

    async def _reload_from_signal(self) -> None:
        """A SIGHUP that meets a running load reloads once that load is done: it has no
        answer to carry a 409, and the file it announces must not be left unserved. Signals
        while one waits are the same reload."""
        if self.loading:
            if self._signal_queued:
                return
            logger.info("SIGHUP: a load is running; %s is reloaded after it", self._source.path)
            self._signal_queued = True
            try:
                async with self._lock:  # the running load's end; ``load`` takes it next
                    pass
            finally:
                self._signal_queued = False
        logger.info("SIGHUP: reloading %s", self._source.path)
        try:
            outcome = await self.load(None)
        except LoadRefused as exc:
            logger.error("SIGHUP reload refused (%s still serves): %s", self._served(), exc)
            return
        if not outcome.changed:
            logger.info("SIGHUP: %s is the file already serving; nothing to do", self._source.path)

    def _served(self) -> str:
        return f"{self.current.name} {self.current.version}" if self.current else "nothing"


class RefusedFile(ModelLoadError):
    """The gate refused the file (as opposed to workers that could not start it)."""
