"""The "not a digit" rule: a score computed from the probabilities, and a threshold.

The service refuses an image whose score is below the threshold; V2 clients, which get the
probabilities, can apply the same rule from the model's metadata. The candidates need only
the ten probabilities, since that is all the graph returns:

- ``max_probability``: the top class's probability (Hendrycks & Gimpel, 2017);
- ``margin``: the top probability minus the second;
- ``certainty``: 1 - entropy / log(10), so 1 for a sure answer and 0 for a uniform one.

Each rule's threshold is the highest that costs real digits at most ``budget`` of accuracy
(right answers refused) on the validation digits; the rule that then refuses the most
held-out non-digits wins. Both go in the model's metadata and card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULES = ("max_probability", "margin", "certainty")
DEFAULT_BUDGET = 0.0015  # right answers on validation digits that may be refused


def score(probabilities: np.ndarray, rule: str) -> np.ndarray:
    """(N,) scores of (N, 10) probabilities under ``rule``: higher means more digit-like."""
    if rule == "max_probability":
        return probabilities.max(axis=1)
    if rule == "margin":
        top2 = np.sort(probabilities, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if rule == "certainty":
        p = np.clip(probabilities, 1e-12, 1.0)
        return 1.0 + (p * np.log(p)).sum(axis=1) / np.log(probabilities.shape[1])
    raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")


def threshold_for(digit_scores: np.ndarray, correct: np.ndarray, budget: float) -> float:
    """The highest threshold refusing at most ``budget`` of the digits among right answers
    (refusing a wrong answer costs no accuracy)."""
    right = np.sort(digit_scores[correct])
    allowed = int(np.floor(budget * len(digit_scores)))
    if len(right) == 0:
        return 0.0
    # Refused: score < threshold. The (allowed)-th lowest right score may be refused...
    # ...so the threshold sits just at the next one.
    return float(right[min(allowed, len(right) - 1)])


@dataclass(frozen=True)
class RuleChoice:
    rule: str
    threshold: float
    budget: float
    digit_false_rejection: float  # right answers refused, share of validation digits
    nondigit_rejection: float  # held-out non-digits refused
    candidates: dict[str, dict[str, float]]  # every rule's threshold and rates


def rates(
    rule: str,
    threshold: float,
    digits: np.ndarray,
    labels: np.ndarray,
    nondigits: np.ndarray,
) -> tuple[float, float]:
    """(right answers refused as a share of digits, non-digits refused) at ``threshold``."""
    refused = score(digits, rule) < threshold
    correct = digits.argmax(axis=1) == labels
    lost = float((refused & correct).mean()) if len(labels) else 0.0
    caught = float((score(nondigits, rule) < threshold).mean()) if len(nondigits) else 0.0
    return lost, caught


def choose_rule(
    digits: np.ndarray,
    labels: np.ndarray,
    nondigits: np.ndarray,
    budget: float = DEFAULT_BUDGET,
) -> RuleChoice:
    """The rule and threshold refusing the most ``nondigits`` within ``budget`` on digits.
    Ties go to the simplest rule (RULES order)."""
    correct = digits.argmax(axis=1) == labels
    candidates: dict[str, dict[str, float]] = {}
    for rule in RULES:
        threshold = threshold_for(score(digits, rule), correct, budget)
        lost, caught = rates(rule, threshold, digits, labels, nondigits)
        candidates[rule] = {
            "threshold": threshold,
            "digit_false_rejection": lost,
            "nondigit_rejection": caught,
        }
    best = max(RULES, key=lambda rule: (candidates[rule]["nondigit_rejection"], -RULES.index(rule)))
    chosen = candidates[best]
    return RuleChoice(
        rule=best,
        threshold=chosen["threshold"],
        budget=budget,
        digit_false_rejection=chosen["digit_false_rejection"],
        nondigit_rejection=chosen["nondigit_rejection"],
        candidates=candidates,
    )


def curve(
    rule: str, digits: np.ndarray, labels: np.ndarray, nondigits: np.ndarray, points: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, right answers refused, non-digits refused) across thresholds."""
    digit_scores, nondigit_scores = score(digits, rule), score(nondigits, rule)
    correct = digits.argmax(axis=1) == labels
    every = np.concatenate([digit_scores, nondigit_scores])
    thresholds = np.unique(np.quantile(every, np.linspace(0, 1, points)))
    lost = np.array([((digit_scores < t) & correct).mean() for t in thresholds])
    caught = np.array([(nondigit_scores < t).mean() for t in thresholds])
    return thresholds, lost, caught
