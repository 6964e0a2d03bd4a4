"""ONNX Runtime alone, in this process: the model's own limit, with the service's settings.

The same ``DigitClassifier`` the service builds (same provider and thread counts), called
back to back from one thread, so the V2 figures can be read as a fraction of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from service.model import DigitClassifier
from service.settings import Settings

_WARM_UP_CALLS = 5


@dataclass(frozen=True)
class InProcessResult:
    calls: int
    duration_s: float
    p50_s: float
    p90_s: float
    p99_s: float

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.duration_s


def run_onnxruntime(settings: Settings, batch: int, duration_s: float) -> InProcessResult:
    """Call ``predict`` on ``batch`` random images for ``duration_s`` seconds."""
    classifier = DigitClassifier(
        settings.resolved_model_path,
        provider=settings.provider,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
    )
    images = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    for _ in range(_WARM_UP_CALLS):
        classifier.predict(images)
    timings: list[float] = []
    started = time.perf_counter()
    deadline = started + duration_s
    while True:
        before = time.perf_counter()
        classifier.predict(images)
        after = time.perf_counter()
        timings.append(after - before)
        if after >= deadline:
            break
    p50, p90, p99 = np.percentile(timings, (50, 90, 99))
    return InProcessResult(len(timings), after - started, float(p50), float(p90), float(p99))
