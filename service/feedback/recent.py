"""The answers of the last few minutes, by request id, waiting for a correction.

A bounded, insertion-ordered map: the oldest answer goes first when it is full, and answers
older than the window go on every insert (they are in time order at the front). Each holds
what the model saw (28x28 8-bit pixels, 784 bytes; none for an image refused before the model
read it, kept so that its correction is told why) and what it was answered, so memory is
about ``capacity`` x 1 KB. A client that reuses an X-Request-ID within the window makes the
id ambiguous: its newest answer is kept, marked, and a correction naming it is refused
(AmbiguousRequest) for that answer's whole window, since it may be meant for the older one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import AlreadyCorrected, AmbiguousRequest, NothingToCorrect, UnknownRequest


@dataclass(slots=True)
class Answered:
    """One image's answer as it was given."""

    pixels: bytes | None  # the 28x28 input the model saw, 8-bit, row by row; None: no input
    predicted: int | str  # the digit, or the code of the error the image was refused with
    confidence: float | None
    model: dict[str, str]  # name, version, sha256 (of the model file)
    monotonic: float
    wall: float  # time.time() of the answer, for the record
    corrected: bool = False
    reused: bool = False  # its request id answered another request too, within the window


class RecentAnswers:
    """At most ``capacity`` answers, each for ``window_s`` seconds."""

    def __init__(
        self,
        capacity: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._answers: OrderedDict[tuple[str, int], Answered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def remember(
        self,
        request_id: str | None,
        index: int,
        pixels: bytes | None,
        predicted: int | str,
        confidence: float | None,
        model: dict[str, str],
    ) -> None:
        if request_id is None:  # not an HTTP request's answer: nobody can name it
            return
        now, answers = self._clock(), self._answers
        self._forget_before(now - self.window_s)  # an id reused after its window is fresh
        key = (request_id, index)
        previous = answers.pop(key, None)  # a reused id: the newest answer, at the back
        answers[key] = Answered(
            pixels,
            predicted,
            confidence,
            model,
            now,
            self._wall_clock(),
            reused=previous is not None,
        )
        while len(answers) > self.capacity:
            answers.popitem(last=False)

    def take(self, request_id: str, index: int) -> Answered:
        """The answer to correct, marked corrected: UnknownRequest if it is not (or no
        longer) here, AmbiguousRequest if its id named another answer too, NothingToCorrect
        if it kept no image, AlreadyCorrected the second time."""
        now = self._clock()
        self._forget_before(now - self.window_s)
        answered = self._answers.get((request_id, index))
        if answered is None:
            raise UnknownRequest(
                f"no answer to request {request_id!r} (image {index}) in the last "
                f"{self.window_s:g} s: corrections are accepted for that long after the "
                "answer, by the instance that gave it"
            )
        if answered.reused:
            raise AmbiguousRequest(
                f"request id {request_id!r} (image {index}) was used by more than one request "
                f"within {self.window_s:g} s: the correction cannot tell which answer it is "
                "about, so it is not recorded; give each request its own X-Request-ID"
            )
        if answered.pixels is None:
            raise NothingToCorrect(
                f"request {request_id!r} (image {index}) was answered {answered.predicted}: "
                "there is no digit image to correct"
            )
        if answered.corrected:
            raise AlreadyCorrected(
                f"the answer to request {request_id!r} (image {index}) was already corrected"
            )
        answered.corrected = True
        return answered

    def release(self, request_id: str, index: int) -> None:
        """The correction could not be stored: it may be sent again."""
        answered = self._answers.get((request_id, index))
        if answered is not None:
            answered.corrected = False

    def _forget_before(self, oldest: float) -> None:
        answers = self._answers
        while answers:
            key, answered = next(iter(answers.items()))
            if answered.monotonic >= oldest:
                return
            del answers[key]
