"""Confidence that means what it says: temperature scaling and its measurement.

Label smoothing and augmentation leave the network's softmax under-confident on clean
digits (a right answer at 0.96 where it should say 0.999), and outlier exposure moves it
again. One scalar fixes that without changing any answer (Guo et al., ICML 2017): the logits
are divided by a temperature T fitted on the validation split by minimising its negative
log-likelihood, and T is folded into the exported graph's softmax (training/export.py).

Expected calibration error (ECE): answers grouped in 15 equal-width confidence bins, the
gap between each bin's mean confidence and its accuracy, weighted by the bin's share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15
_LOG_T_RANGE = (-3.0, 3.0)  # T between 0.05 and 20: far beyond any sane fit


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on (logits, labels).

    The NLL is convex in 1/T, so a bounded golden-section search on log T finds the optimum
    to 1e-6 without tuning a learning rate.
    """
    logits, labels = logits.detach().double(), labels.detach()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / np.exp(log_t), labels))

    low, high = _LOG_T_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    while high - low > 1e-6:
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return float(np.exp((low + high) / 2))


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: mean confidence, accuracy and number of answers (empty bins: 0)."""

    edges: np.ndarray  # (bins + 1,)
    confidence: np.ndarray  # (bins,)
    accuracy: np.ndarray  # (bins,)
    counts: np.ndarray  # (bins,)

    @property
    def ece(self) -> float:
        total = max(int(self.counts.sum()), 1)
        return float((self.counts * np.abs(self.confidence - self.accuracy)).sum() / total)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """The reliability table of (N, 10) probabilities against (N,) labels."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (low, high]; a confidence of exactly 0 goes in the first.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=confidence, minlength=bins)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    safe = np.maximum(counts, 1)
    return Reliability(edges, sums / safe, hits / safe, counts)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    return reliability(probabilities, labels, bins).ece
