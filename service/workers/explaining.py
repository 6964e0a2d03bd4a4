"""How many explained images the workers compute at once, and in what order.

An explanation runs the model on the image's occluded copies (service/explanations/
occlusion.py): about a hundred times an answer's work. Sent as plain images are, in frames of
up to DIGITS_BATCH_MAX_SIZE spread over every worker, a 64-image ``?explain=true`` batch held
each worker for a whole frame, and the plain requests behind it on that worker waited for
all of it: with one client sending explained batches, plain ``/predict`` p50 went from
4 ms to about half a second, with three to about 3 s (docs/performance.md, "Explanations
beside plain requests"). So an explained image goes alone in its frame, and only half the
workers' number (at least one) are in the workers at once: a plain request waits behind at
most that many (one, on two workers), wherever the pool sends it. Explained images take turns
in the order they arrived, across requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class ExplainTurns:
    """Turns for explained images: ``max(1, workers // 2)`` at once."""

    def __init__(self, workers: int) -> None:
        self.at_once = max(1, workers // 2)
        self._turns = asyncio.Semaphore(self.at_once)

    async def run(self, classify: Callable[[], Awaitable[T]]) -> T:
        """``classify()``, called and awaited once a turn is free (so the image is admitted
        to the queue, or refused, only then)."""
        async with self._turns:
            return await classify()

    def start(self, classify: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """``run`` as a future of its own: a batch's images wait for their turns together,
        and cancelling the future (the request gave up) frees a turn it held."""
        return asyncio.ensure_future(self.run(classify))
