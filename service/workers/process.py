"""A worker process: decode, normalise and classify what the server sends, in batches.

Started by service/workers/connection.py as a fresh interpreter (``BOOT`` there). It opens
its own ONNX Runtime session and announces the model (or why it cannot load it), then loops:
take a batch of frames (service/workers/batching.py), have the imaging package prepare its
images (``prepare_batch``; the progress slot names the image being worked on, so the server
can tell a stuck or crashing image from its neighbours), run the model once for the batch,
and send every reply in one write. A bad image fails only its own entry in its frame's
reply; a failed model call fails the inputs of that call. A shadow model
(service/workers/shadow.py), if configured, is offered the batch's rows and runs after the
replies left, unless more work is waiting.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from service.contract import NUM_CLASSES, SIDE, ModelLoadError, ModelSpec
from service.errors import InternalError, ServiceError
from service.imaging import Prepared, prepare_batch
from service.imaging.pipeline import StepsFactory
from service.logs import configure_logging
from service.model import DigitClassifier
from service.workers import protocol as wire
from service.workers.batching import collect
from service.workers.inbox import Frame, SocketInbox
from service.workers.progress import ProgressSlot
from service.workers.replies import ModelCall, replies, trace_id
from service.workers.shadow import Shadow

logger = logging.getLogger("service.workers")


@dataclass(frozen=True)
class Limits:
    allowed_formats: frozenset[str]
    max_pixels: int
    max_batch_size: int
    max_delay_s: float
    max_batch_pixels: int  # decoded by one frame's images together


def worker_main(config: dict[str, Any]) -> None:
    """Entry point of a worker process: ``config`` is what the server's ``spawn`` sent."""
    configure_logging(str(config.get("log_level", "INFO")))
    # Pillow warns of what it skips in a client's file (a TIFF tag, an APNG's broken frames)
    # in lines that quote the file: the image is read or refused all the same.
    warnings.filterwarnings("ignore", module="PIL")
    cv2.setNumThreads(1)  # one thread per worker: the pool is the parallelism
    module, _, name = str(config["steps"]).partition(":")
    steps: StepsFactory = getattr(importlib.import_module(module), name)
    limits = Limits(
        frozenset(config["formats"]),
        int(config["max_pixels"]),
        int(config["max_batch_size"]),
        float(config["max_delay_us"]) / 1_000_000,
        int(config["max_batch_pixels"]),
    )
    sock = socket.socket(fileno=int(config["fd"]))
    slot = ProgressSlot(int(config["progress_fd"]))
    os.close(int(config["progress_fd"]))
    try:
        model = DigitClassifier.open(ModelSpec(**config["model"]))
        model.warm_up((1, limits.max_batch_size))
        shadow = Shadow.open(config.get("shadow"), limits.max_batch_size)
    except ModelLoadError as exc:
        sock.sendall(wire.announcement(wire.FAILED, str(exc).encode()))
        return
    gc.collect()
    gc.freeze()  # as in the server (service/app.py): full collections skip the start-up objects
    sock.sendall(wire.announcement(wire.READY, model.info.to_json()))
    serve(sock, slot, steps, model, limits, shadow)


def serve(
    sock: socket.socket,
    slot: ProgressSlot,
    steps: StepsFactory,
    model: DigitClassifier,
    limits: Limits,
    shadow: Shadow | None = None,
) -> None:
    """Batches in, replies out, until the server closes the socket (or is gone when a reply
    is sent: a front end killed mid-batch; nobody waits for it); the shadow's report (if
    any) after the replies, never before."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server drains first, then stops us
    inbox = SocketInbox(sock)
    try:
        while (batch := collect(inbox, limits.max_batch_size, limits.max_delay_s)) is not None:
            sock.sendall(run_batch(batch, slot, steps, model, limits, shadow))
            if shadow is not None and (report := shadow.report(inbox.waiting())) is not None:
                sock.sendall(report)
    except (BrokenPipeError, ConnectionResetError):
        return


def run_batch(
    batch: list[Frame],
    slot: ProgressSlot,
    steps: StepsFactory,
    model: DigitClassifier,
    limits: Limits,
    shadow: Shadow | None = None,
) -> bytes:
    """The replies to ``batch``, concatenated: one model call for all its good inputs
    (which the shadow, if any, is offered)."""
    prepared_at = time.monotonic()
    images = _prepare(batch, slot, steps, limits)
    rows = [
        np.frombuffer(frame.payload, np.float32).reshape(frame.count, wire.IMAGE_FLOATS)
        if frame.kind == wire.TENSOR
        else image.pixels.reshape(1, -1)  # type: ignore[union-attr]
        for frame, image in _inputs(batch, images)
    ]
    started = time.monotonic()
    probabilities = np.empty((0, NUM_CLASSES), np.float32)
    failed: ServiceError | None = None
    stacked = probabilities
    if rows:
        try:
            stacked = np.concatenate(rows)
            probabilities = model.predict(stacked.reshape(-1, 1, SIDE, SIDE))
        except Exception:  # never the client's fault: fail exactly the inputs of this call
            traces = [trace for frame in batch if (trace := trace_id(frame))]
            logger.exception(
                "the model call of a batch of %d inputs failed",
                len(rows),
                extra={"trace_ids": traces} if traces else None,
            )
            failed = InternalError("internal error")
    call = ModelCall(probabilities, failed, prepared_at, started, time.monotonic() - started)
    if shadow is not None and len(probabilities):
        shadow.offer(stacked, probabilities)  # the rows exactly as the served model saw them
    return b"".join(replies(batch, images, call, model))


def _prepare(
    batch: list[Frame], slot: ProgressSlot, steps: StepsFactory, limits: Limits
) -> dict[int, list[Prepared]]:
    """The encoded images of ``batch`` made ready for the model (or failed), by frame."""
    owners: list[tuple[int, int]] = []  # (request id, position in its frame) of each image
    payloads: list[bytes] = []
    for frame in batch:
        if frame.kind == wire.ENCODED:
            images = frame.images()
            owners += [(frame.request_id, index) for index in range(len(images))]
            payloads += images
    prepared = prepare_batch(
        payloads,
        allowed_formats=limits.allowed_formats,
        max_pixels=limits.max_pixels,
        steps=steps,
        on_stage=slot.marker(owners),
        groups=[request_id for request_id, _ in owners],
        max_group_pixels=limits.max_batch_pixels,
    )
    slot.idle()
    by_frame: dict[int, list[Prepared]] = {}
    for (request_id, _), image in zip(owners, prepared, strict=True):
        by_frame.setdefault(request_id, []).append(image)
    return by_frame


def _inputs(
    batch: list[Frame], images: dict[int, list[Prepared]]
) -> list[tuple[Frame, Prepared | None]]:
    """The model's inputs in batch order: each tensor frame, each good image."""
    inputs: list[tuple[Frame, Prepared | None]] = []
    for frame in batch:
        if frame.kind == wire.TENSOR:
            inputs.append((frame, None))
        else:
            inputs += [(frame, image) for image in images[frame.request_id] if image.error is None]
    return inputs
