"""(worker) Is it a digit at all? The model's score rule, and the shape of the ink.

Decided in the worker, right after the model call, where both the probabilities and the
28x28 image the model saw are at hand: a refusal travels back as an ordinary error reply
(``not_a_digit``), so the server<->worker wire carries nothing new. V2 tensor requests are
never judged: they get the probabilities, and the rule is in the model's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.contract import SIDE, RejectRule
from service.errors import NotADigit
from service.imaging.shape import Shape, measure_shape

NOT_A_DIGIT = "That doesn't look like a digit"
# What a low score means, in words for the person who sent the image, true of every rule and
# threshold (DIGITS_NOT_A_DIGIT_THRESHOLD may be raised far above the model's); the score and
# its threshold follow in brackets for whoever tunes them.
UNSURE = "the model is not sure enough that this is a digit at all"
ROW_ADVICE = ": send one digit per image"  # after a refusal that found a number sent whole
DECIMALS = (3, 4, 5, 6)  # a score and its threshold are shown apart: 0.0021 under 0.0024


def scores(probabilities: np.ndarray, rule: str) -> np.ndarray:
    """The rule's scores (N,) of a model call's (N, 10) probabilities: higher means more
    digit-like. training/rejection.py's formula step for step, so an image is judged on the
    score its threshold was chosen on; once per model call, as numpy's per-call cost would be
    most of the time for one image."""
    if rule == "margin":
        top2 = np.sort(probabilities, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if rule == "certainty":
        p = np.clip(probabilities, 1e-12, 1.0)
        return 1.0 + (p * np.log(p)).sum(axis=1) / np.log(probabilities.shape[1])
    return probabilities.max(axis=1)


def refusal(
    reject: RejectRule | None,
    labels: Sequence[str],
    pixels: np.ndarray,
    probabilities: np.ndarray,
    score: float,
) -> NotADigit | None:
    """The error to answer instead of a digit, or None when the image reads as one.
    ``score``: its entry of ``scores`` under the rule."""
    if reject is None:
        return None
    image = pixels.reshape(SIDE, SIDE)
    # The shape first: when both refuse, its reason is the one a person understands.
    shape = measure_shape(image)
    odd = shape.oddity()
    if odd is None and score >= reject.threshold:
        return None
    guess = _guess(labels, probabilities)
    if odd is not None:
        reason = f"{odd} ({guess})"
    else:
        shown, needed = _apart(score, reject.threshold)
        reason = (
            f"{guess}, but {UNSURE} ({reject.rule.replace('_', ' ')} {shown}, under the "
            f"{needed} a digit needs)"
        )
    return NotADigit(f"{NOT_A_DIGIT}: {reason}{_row_hint(shape, odd)}.")


def _apart(score: float, threshold: float) -> tuple[str, str]:
    """``score`` and ``threshold`` with the fewest decimals (of DECIMALS) that tell them apart:
    "0.002, under the 0.002" said nothing."""
    for places in DECIMALS:
        shown, needed = f"{score:.{places}f}", f"{threshold:.{places}f}"
        if shown != needed:
            break
    return shown, needed


def _row_hint(shape: Shape, odd: str | None) -> str:
    """What to do about a number: several digits sent as one image, which the sender can fix
    (said once: the shape's oddity may already be that it is one)."""
    if shape.in_a_row < 2:
        return ""
    words = shape.row_words()
    return ROW_ADVICE if odd == words else f"; {words}{ROW_ADVICE}"


def _guess(labels: Sequence[str], probabilities: np.ndarray) -> str:
    best = int(probabilities.argmax())
    return f"the best guess is {labels[best]} with confidence {float(probabilities[best]):.2f}"
