"""(worker) Is it a digit at all? The model's score rule, and the shape of the ink.

Decided in the worker, right after the model call, where both the probabilities and the
28x28 image the model saw are at hand: a refusal travels back as an ordinary error reply
(``not_a_digit``), so the server<->worker wire carries nothing new. V2 tensor requests are
never judged: they get the probabilities, and the rule is in the model's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.contract import RejectRule
from service.errors import NotADigit
from service.imaging.shape import measure_shape

NOT_A_DIGIT = "That doesn't look like a digit"


def score(probabilities: np.ndarray, rule: str) -> float:
    """The rule's score of one image's (10,) probabilities (training/rejection.py made the
    rule; the two must agree): higher means more digit-like. Plain Python over ten floats:
    numpy's per-call cost would be most of the time."""
    p = probabilities.tolist()
    if rule == "margin":
        first = max(p)
        p.remove(first)
        return first - max(p)
    if rule == "certainty":
        entropy = -sum(q * math.log(q) for q in p if q > 1e-12)
        return 1.0 - entropy / math.log(len(p))
    return max(p)


def refusal(
    reject: RejectRule | None,
    labels: Sequence[str],
    pixels: np.ndarray,
    probabilities: np.ndarray,
) -> NotADigit | None:
    """The error to answer instead of a digit, or None when the image reads as one."""
    if reject is None:
        return None
    # The shape first: when both refuse, its reason is the one a person understands.
    odd = measure_shape(pixels.reshape(28, 28)).oddity()
    if odd is not None:
        return NotADigit(f"{NOT_A_DIGIT}: {odd} ({_guess(labels, probabilities)}).")
    value = score(probabilities, reject.rule)
    if value < reject.threshold:
        return NotADigit(
            f"{NOT_A_DIGIT}: {_guess(labels, probabilities)}, and its "
            f"{reject.rule.replace('_', ' ')} {value:.3f} is below the {reject.threshold:.3f} "
            "a digit needs."
        )
    return None


def _guess(labels: Sequence[str], probabilities: np.ndarray) -> str:
    best = int(probabilities.argmax())
    return f"the best guess is {labels[best]} with confidence {float(probabilities[best]):.2f}"
