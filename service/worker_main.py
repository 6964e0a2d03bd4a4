"""A worker process: decode, normalise and classify what the server sends, in batches.

Started by service/workers.py as a fresh interpreter (see ``BOOT`` there). It loads its own
ONNX Runtime session, then loops: take a batch of frames (service/batching.py), decode and
normalise its images stage by stage (each stage of every image, then the next stage; before
each, the image's id goes to the progress slot, so that the server can tell a stuck or
crashing image from its neighbours; the statistics of the decoded images are measured for
the whole batch at once), run the model once for the batch, and send every reply in one
write. A bad image fails only its own reply; a failed model call fails the inputs of
that call.
"""

from __future__ import annotations

import gc
import importlib
import os
import select
import signal
import socket
import time
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from service import worker_protocol as wire
from service.batching import collect
from service.errors import ServiceError
from service.model import DigitClassifier, ModelSpec
from service.preprocessing import Measure, Measurement, Steps, measure

RECEIVE_BYTES = 1 << 20
_INTERNAL_STATUS = 500


class Preprocess(Protocol):
    """``preprocess_steps``'s signature: one image's stages (a generator whose return value is
    the (28, 28) image); tests inject slow or crashing stand-ins."""

    def __call__(
        self, data: bytes, *, allowed_formats: Collection[str], max_pixels: int
    ) -> Steps: ...


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
        # One receive buffer for the worker's life: ``recv(1 MiB)`` allocated a fresh 1 MiB
        # object each time, three memory syscalls (mmap, mremap, munmap) per frame.
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
        if len(buffer) < wire.REQUEST.size:
            return None
        request_id, kind, flags, count, sent_at, length = wire.REQUEST.unpack_from(buffer)
        end = wire.REQUEST.size + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[wire.REQUEST.size : end])
        del buffer[:end]
        return Frame(request_id, kind, flags, count, sent_at, payload)


@dataclass(frozen=True)
class Limits:
    allowed_formats: frozenset[str]
    max_pixels: int
    max_batch_size: int
    max_delay_s: float


def worker_main(config: dict[str, Any]) -> None:
    """Entry point of a worker process: ``config`` is what the server's ``_spawn`` sent."""
    cv2.setNumThreads(1)  # one thread per worker: the pool is the parallelism
    module, _, name = str(config["preprocess"]).partition(":")
    preprocess: Preprocess = getattr(importlib.import_module(module), name)
    model = ModelSpec(**config["model"]).open()
    model.warm_up((1, int(config["max_batch_size"])))
    limits = Limits(
        frozenset(config["formats"]),
        int(config["max_pixels"]),
        int(config["max_batch_size"]),
        float(config["max_delay_us"]) / 1_000_000,
    )
    sock = socket.socket(fileno=int(config["fd"]))
    slot = wire.ProgressSlot(int(config["progress_fd"]))
    os.close(int(config["progress_fd"]))
    gc.collect()
    gc.freeze()  # as in the server (service/app.py): full collections skip the start-up objects
    serve(sock, slot, preprocess, model, limits)


def serve(
    sock: socket.socket,
    slot: wire.ProgressSlot,
    preprocess: Preprocess,
    model: DigitClassifier,
    limits: Limits,
) -> None:
    """Batches in, replies out, until the server closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server drains first, then stops us
    sock.sendall(wire.REPLY.pack(0, wire.READY, 0, 0.0, 0.0, 0.0, 0))
    inbox = SocketInbox(sock)
    while (batch := collect(inbox, limits.max_batch_size, limits.max_delay_s)) is not None:
        sock.sendall(run_batch(batch, slot, preprocess, model, limits))


@dataclass(slots=True)
class _Outcome:
    frame: Frame
    seconds: float  # decode + normalisation
    inputs: np.ndarray | None = None  # (count, 784) for the model
    error: bytes | None = None  # an encoded ServiceError
    asked: Measure | None = None  # what its last stage asked to have measured
    answer: Measurement | None = None  # for its next stage


def run_batch(
    batch: list[Frame],
    slot: wire.ProgressSlot,
    preprocess: Preprocess,
    model: DigitClassifier,
    limits: Limits,
) -> bytes:
    """The replies to ``batch``, concatenated: one model call for all its good inputs."""
    outcomes = _prepare(batch, slot, preprocess, limits)
    slot.idle()
    good = [outcome for outcome in outcomes if outcome.inputs is not None]
    started = time.monotonic()
    probabilities = np.empty((0, wire.CLASSES), np.float32)
    if good:
        try:
            stacked = np.concatenate([outcome.inputs for outcome in good])  # type: ignore[misc]
            probabilities = model.predict(stacked.reshape(-1, 1, wire.SIDE, wire.SIDE))
        except Exception:  # never the client's fault: fail exactly the inputs of this call
            traceback.print_exc()
            for outcome in good:
                outcome.inputs, outcome.error = None, _internal_error()
    seconds = time.monotonic() - started
    return b"".join(_replies(outcomes, probabilities, started, seconds))


def _prepare(
    batch: list[Frame], slot: wire.ProgressSlot, preprocess: Preprocess, limits: Limits
) -> list[_Outcome]:
    """Every input of ``batch`` made ready for the model (or failed), the encoded images
    stage by stage: each stage of every image before the next stage of any (why:
    ``service.preprocessing.preprocess_steps``)."""
    outcomes: list[_Outcome] = []
    running: list[tuple[_Outcome, Steps]] = []
    for frame in batch:
        if frame.kind == wire.TENSOR:
            inputs = np.frombuffer(frame.payload, np.float32).reshape(
                frame.count, wire.IMAGE_FLOATS
            )
            outcomes.append(_Outcome(frame, 0.0, inputs=inputs))
            continue
        outcome = _Outcome(frame, 0.0)
        outcomes.append(outcome)
        try:  # a generator runs nothing yet; a stand-in that is not one may raise here
            steps = preprocess(
                frame.payload, allowed_formats=limits.allowed_formats, max_pixels=limits.max_pixels
            )
        except Exception:  # a bug, never the client's fault: say so, keep serving
            traceback.print_exc()
            outcome.error = _internal_error()
            continue
        running.append((outcome, steps))
    while running:
        running = [(outcome, steps) for outcome, steps in running if _stage(outcome, steps, slot)]
        running = _measure(running, slot)
    return outcomes


def _measure(
    running: list[tuple[_Outcome, Steps]], slot: wire.ProgressSlot
) -> list[tuple[_Outcome, Steps]]:
    """Answer the images whose last stage asked to be measured, all in one ``measure`` call,
    each charged an equal share of its time; returns ``running`` less any it failed. The
    progress slot names the first of them: numpy over a batch of bounded arrays does not
    hang, and a bug here fails them all alike."""
    asking = [outcome for outcome, _ in running if outcome.asked is not None]
    if not asking:
        return running
    slot.decoding(asking[0].frame.request_id, asking[0].seconds)
    started = time.perf_counter()
    try:
        answers = measure([outcome.asked.work for outcome in asking])  # type: ignore[union-attr]
    except Exception:  # a bug, never the client's fault: say so, keep serving
        traceback.print_exc()
        for outcome in asking:
            outcome.asked, outcome.error = None, _internal_error()
        return [(outcome, steps) for outcome, steps in running if outcome.error is None]
    share = (time.perf_counter() - started) / len(asking)
    for outcome, answer in zip(asking, answers, strict=True):
        outcome.asked, outcome.answer = None, answer
        outcome.seconds += share
    return running


def _stage(outcome: _Outcome, steps: Steps, slot: wire.ProgressSlot) -> bool:
    """Run the next stage of one image; False once it has its input row or its error. The
    progress slot names the image during each of its stages, with its time so far: a stage
    that hangs or crashes the worker is blamed on its own image, and the timeout bounds the
    image's own decode + normalisation time as when images ran one by one."""
    slot.decoding(outcome.frame.request_id, outcome.seconds)
    started = time.perf_counter()
    try:
        row = _advance(outcome, steps)
        if row is None:
            return True
        outcome.inputs = row
    except ServiceError as exc:
        outcome.error = wire.encode_error(exc)
    except Exception:  # a bug, never the client's fault: say so, keep serving
        traceback.print_exc()
        outcome.error = _internal_error()
    finally:
        outcome.seconds += time.perf_counter() - started
    return False


def _advance(outcome: _Outcome, steps: Steps) -> np.ndarray | None:
    """The image's (1, 784) float32 input row once its last stage has run, None before (and
    what the stage asked to have measured, if anything, in ``outcome.asked``)."""
    answer, outcome.answer = outcome.answer, None
    try:
        outcome.asked = steps.send(answer)
        return None
    except StopIteration as done:
        result = done.value
    pixels = np.asarray(result, dtype=np.float32)
    if pixels.shape != (wire.SIDE, wire.SIDE):
        raise ValueError(f"preprocessing returned shape {pixels.shape}, not (28, 28)")
    return pixels.reshape(1, -1)


def _internal_error() -> bytes:
    return wire.encode_error(ServiceError(_INTERNAL_STATUS, "internal_error", "internal error"))


def _replies(
    outcomes: list[_Outcome],
    probabilities: np.ndarray,
    started: float,
    seconds: float,
) -> list[bytes]:
    parts: list[bytes] = []
    first = True
    row = 0  # the good inputs' rows follow one another in ``probabilities``
    for outcome in outcomes:
        frame = outcome.frame
        if outcome.inputs is None:
            payload = outcome.error or b""
            parts.append(_reply(frame, wire.ERROR, 0, outcome.seconds, 0.0, 0.0, payload))
            continue
        payload = probabilities[row : row + frame.count].tobytes()
        row += frame.count
        if frame.flags & wire.WITH_IMAGE:
            payload += outcome.inputs.tobytes()
        waited = max(0.0, started - frame.sent_at - outcome.seconds)
        size = len(probabilities) if first else 0
        parts.append(
            _reply(
                frame,
                wire.RESULT,
                size,
                outcome.seconds,
                waited,
                seconds if first else 0.0,
                payload,
            )
        )
        first = False
    return parts


def _reply(
    frame: Frame,
    kind: int,
    size: int,
    decode_s: float,
    wait_s: float,
    model_s: float,
    payload: bytes,
) -> bytes:
    header = wire.REPLY.pack(frame.request_id, kind, size, decode_s, wait_s, model_s, len(payload))
    return header + payload
