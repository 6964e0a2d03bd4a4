"""A worker process: decode, normalise and classify what the server sends, in batches.

Started by service/workers/connection.py as a fresh interpreter (``BOOT`` there). It opens
its own ONNX Runtime session and announces the model (or why it cannot load it), then loops:
take a batch of frames (service/workers/batching.py), have the imaging package prepare its
images (``prepare_batch``; the progress slot names the image being worked on, so the server
can tell a stuck or crashing image from its neighbours), run the model once for the batch,
and send every reply in one write. A bad image fails only its own reply; a failed model call
fails the inputs of that call.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from service.contract import NUM_CLASSES, SIDE, ModelLoadError, ModelSpec
from service.errors import InternalError, ServiceError
from service.imaging import encode_png, prepare_batch
from service.imaging.pipeline import StepsFactory
from service.logs import configure_logging
from service.model import DigitClassifier
from service.workers import protocol as wire
from service.workers.batching import collect
from service.workers.verdict import refusal

logger = logging.getLogger("service.workers")

RECEIVE_BYTES = 1 << 20


@dataclass(slots=True)
class Frame:
    """One input as received: an encoded image (count 1) or ``count`` ready images."""

    request_id: int
    kind: int
    flags: int
    count: int
    sent_at: float
    payload: bytes


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
        return Frame(head.request_id, head.kind, head.flags, head.count, head.sent_at, payload)


@dataclass(frozen=True)
class Limits:
    allowed_formats: frozenset[str]
    max_pixels: int
    max_batch_size: int
    max_delay_s: float


def worker_main(config: dict[str, Any]) -> None:
    """Entry point of a worker process: ``config`` is what the server's ``spawn`` sent."""
    configure_logging(str(config.get("log_level", "INFO")))
    cv2.setNumThreads(1)  # one thread per worker: the pool is the parallelism
    module, _, name = str(config["steps"]).partition(":")
    steps: StepsFactory = getattr(importlib.import_module(module), name)
    limits = Limits(
        frozenset(config["formats"]),
        int(config["max_pixels"]),
        int(config["max_batch_size"]),
        float(config["max_delay_us"]) / 1_000_000,
    )
    sock = socket.socket(fileno=int(config["fd"]))
    slot = wire.ProgressSlot(int(config["progress_fd"]))
    os.close(int(config["progress_fd"]))
    try:
        model = DigitClassifier.open(ModelSpec(**config["model"]))
        model.warm_up((1, limits.max_batch_size))
    except ModelLoadError as exc:
        sock.sendall(wire.announcement(wire.FAILED, str(exc).encode()))
        return
    gc.collect()
    gc.freeze()  # as in the server (service/app.py): full collections skip the start-up objects
    sock.sendall(wire.announcement(wire.READY, model.info.to_json()))
    serve(sock, slot, steps, model, limits)


def serve(
    sock: socket.socket,
    slot: wire.ProgressSlot,
    steps: StepsFactory,
    model: DigitClassifier,
    limits: Limits,
) -> None:
    """Batches in, replies out, until the server closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server drains first, then stops us
    inbox = SocketInbox(sock)
    while (batch := collect(inbox, limits.max_batch_size, limits.max_delay_s)) is not None:
        sock.sendall(run_batch(batch, slot, steps, model, limits))


@dataclass(slots=True)
class _Outcome:
    frame: Frame
    seconds: float = 0.0  # decode + normalisation
    inputs: np.ndarray | None = None  # (count, 784) for the model
    error: ServiceError | None = None


def run_batch(
    batch: list[Frame],
    slot: wire.ProgressSlot,
    steps: StepsFactory,
    model: DigitClassifier,
    limits: Limits,
) -> bytes:
    """The replies to ``batch``, concatenated: one model call for all its good inputs."""
    outcomes = _prepare(batch, slot, steps, limits)
    good = [outcome for outcome in outcomes if outcome.inputs is not None]
    started = time.monotonic()
    probabilities = np.empty((0, NUM_CLASSES), np.float32)
    if good:
        try:
            stacked = np.concatenate([outcome.inputs for outcome in good])  # type: ignore[misc]
            probabilities = model.predict(stacked.reshape(-1, 1, SIDE, SIDE))
        except Exception:  # never the client's fault: fail exactly the inputs of this call
            logger.exception("the model call of a batch of %d inputs failed", len(good))
            for outcome in good:
                outcome.inputs, outcome.error = None, InternalError("internal error")
    seconds = time.monotonic() - started
    return b"".join(_replies(outcomes, probabilities, started, seconds, model))


def _prepare(
    batch: list[Frame], slot: wire.ProgressSlot, steps: StepsFactory, limits: Limits
) -> list[_Outcome]:
    """Every input of ``batch`` made ready for the model (or failed), in batch order."""
    encoded = [frame for frame in batch if frame.kind == wire.ENCODED]
    prepared = iter(
        prepare_batch(
            [frame.payload for frame in encoded],
            allowed_formats=limits.allowed_formats,
            max_pixels=limits.max_pixels,
            steps=steps,
            on_stage=lambda index, spent: slot.decoding(encoded[index].request_id, spent),
        )
    )
    slot.idle()
    outcomes = []
    for frame in batch:
        if frame.kind == wire.TENSOR:
            inputs = np.frombuffer(frame.payload, np.float32).reshape(
                frame.count, wire.IMAGE_FLOATS
            )
            outcomes.append(_Outcome(frame, inputs=inputs))
            continue
        image = next(prepared)
        pixels = None if image.pixels is None else image.pixels.reshape(1, -1)
        outcomes.append(_Outcome(frame, image.seconds, pixels, image.error))
    return outcomes


def _replies(
    outcomes: list[_Outcome],
    probabilities: np.ndarray,
    started: float,
    seconds: float,
    model: DigitClassifier,
) -> list[bytes]:
    parts: list[bytes] = []
    first = True
    row = 0  # the good inputs' rows follow one another in ``probabilities``
    for outcome in outcomes:
        frame = outcome.frame
        if outcome.inputs is not None and frame.kind == wire.ENCODED:
            # An image, not a V2 tensor: is it a digit at all? (service/workers/verdict.py)
            refused = refusal(model.reject, model.info.labels, outcome.inputs, probabilities[row])
            if refused is not None:
                row += frame.count
                payload = wire.encode_error(refused)
                size, model_s = (len(probabilities), seconds) if first else (0, 0.0)
                head = wire.ReplyHead(
                    frame.request_id, wire.ERROR, size, outcome.seconds, 0.0, model_s, len(payload)
                )
                parts += (head.pack(), payload)
                first = False
                continue
        if outcome.inputs is None:
            payload = wire.encode_error(outcome.error or InternalError("internal error"))
            head = wire.ReplyHead(
                frame.request_id, wire.ERROR, 0, outcome.seconds, 0.0, 0.0, len(payload)
            )
            parts += (head.pack(), payload)
            continue
        rows = probabilities[row : row + frame.count].tobytes()
        row += frame.count
        png = None
        if frame.flags & wire.WITH_IMAGE:
            png = encode_png(outcome.inputs.reshape(SIDE, SIDE))
        payload = wire.encode_result(rows, png)
        waited = max(0.0, started - frame.sent_at - outcome.seconds)
        head = wire.ReplyHead(
            frame.request_id,
            wire.RESULT,
            len(probabilities) if first else 0,
            outcome.seconds,
            waited,
            seconds if first else 0.0,
            len(payload),
        )
        parts += (head.pack(), payload)
        first = False
    return parts
