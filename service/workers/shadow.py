"""The shadow model in a worker process: a second model that sees a sample of live inputs.

It never touches an answer. ``offer`` keeps the sampled inputs of a batch (already decoded and
normalised: exactly what the served model saw) with the served model's digits for them; the
worker sends the batch's replies first, and only then asks ``report``: if another input is
already waiting, the shadow yields (the sampled inputs are counted as dropped), otherwise
it runs on them and the report (agreement, confidence, its time) goes to the server as a
SHADOW frame. Under load the shadow is therefore the first thing to go; idle, it costs one
extra small model call after the answers left.

Sampling is an even stride, not random: a rate of 0.25 takes every fourth input, so a known
set of inputs gives known counts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from service.contract import SIDE, ModelSpec
from service.model import DigitClassifier
from service.workers import protocol as wire

logger = logging.getLogger("service.workers")


class Shadow:
    """The sampled inputs of the latest batch, and the model that will judge them."""

    def __init__(self, model: DigitClassifier, sample_rate: float) -> None:
        self.model = model
        self._rate = sample_rate
        self._credit = 0.0  # the fraction of an input owed to the sample, carried over
        self._inputs: list[np.ndarray] = []
        self._digits: list[np.ndarray] = []

    @classmethod
    def open(cls, config: dict[str, Any] | None, batch_size: int) -> Shadow | None:
        """The shadow a worker's config asks for, warmed up; None when it asks for none."""
        if not config:
            return None
        model = DigitClassifier.open(ModelSpec(**config["model"]))
        model.warm_up((1, batch_size))
        return cls(model, float(config["sample_rate"]))

    def offer(self, inputs: np.ndarray, probabilities: np.ndarray) -> None:
        """A batch's model inputs (n, 784) and the served model's answers (n, 10)."""
        try:
            self._sample(inputs, probabilities)
        except Exception:  # a shadow bug must never fail the answers it was offered
            logger.exception("the shadow could not sample a batch")

    def _sample(self, inputs: np.ndarray, probabilities: np.ndarray) -> None:
        positions = self._credit + self._rate * np.arange(1, len(inputs) + 1)
        steps = np.floor(positions)
        taken = np.diff(steps, prepend=0.0) > 0
        self._credit = float(positions[-1] - steps[-1])
        if taken.any():
            self._inputs.append(inputs[taken])
            self._digits.append(probabilities[taken].argmax(axis=1))

    def report(self, busy: bool) -> bytes | None:
        """The SHADOW frame for what was offered since the last report (None: nothing was);
        ``busy``: another input is waiting, so the shadow yields to it."""
        if not self._inputs:
            return None
        inputs, digits = np.concatenate(self._inputs), np.concatenate(self._digits)
        self._inputs.clear()
        self._digits.clear()
        nothing = np.empty(0, np.float32)
        if busy:
            return wire.encode_shadow(wire.ShadowReport(nothing, nothing, 0.0, len(inputs)))
        started = time.monotonic()
        try:
            probabilities = self.model.predict(inputs.reshape(-1, 1, SIDE, SIDE))
        except Exception:  # the answers are out already: a failing shadow only loses its report
            logger.exception("the shadow model failed on %d inputs", len(inputs))
            return wire.encode_shadow(wire.ShadowReport(nothing, nothing, 0.0, len(inputs)))
        seconds = time.monotonic() - started
        agree = probabilities.argmax(axis=1) == digits
        report = wire.ShadowReport(agree, probabilities.max(axis=1), seconds, 0)
        return wire.encode_shadow(report)
