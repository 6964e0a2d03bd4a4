"""POST /feedback's work: find the answer, write the correction, count it."""

from __future__ import annotations

import asyncio
from typing import Any

from service.feedback.recent import RecentAnswers
from service.feedback.store import CorrectionStore
from service.logs import iso_utc
from service.metrics import Metrics
from service.settings import Settings
from service.settings.messages import ConfigurationError

NOT_A_DIGIT = "not_a_digit"


class FeedbackStoreError(ConfigurationError):
    """The corrections folder cannot be used; the message names it and why."""


def open_store(settings: Settings) -> CorrectionStore | None:
    """The corrections folder, created and a write tried; None when feedback is off. Start-up
    calls it before the port is bound too, to stop with one line (exit 2), not a lifespan's
    traceback (exit 3)."""
    folder = settings.feedback_dir
    if folder is None:
        return None
    try:
        return CorrectionStore(folder, settings.feedback_max_records)
    except OSError as exc:
        raise FeedbackStoreError(
            f"DIGITS_FEEDBACK_DIR {folder} cannot be written: {exc.strerror or exc}"
        ) from exc


class Feedback:
    """The recent answers and the corrections folder of one front-end process."""

    def __init__(self, recent: RecentAnswers, store: CorrectionStore, metrics: Metrics) -> None:
        self.recent = recent
        self.store = store
        self._metrics = metrics

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> Feedback | None:
        """None when feedback is off (no DIGITS_FEEDBACK_DIR)."""
        store = open_store(settings)
        if store is None:
            return None
        recent = RecentAnswers(settings.feedback_recent_answers, settings.feedback_window_seconds)
        metrics.prepare_corrections([*(str(digit) for digit in range(10)), NOT_A_DIGIT])
        return cls(recent, store, metrics)

    async def correct(self, request_id: str, index: int, digit: int | None) -> dict[str, Any]:
        """Record that image ``index`` of request ``request_id`` was ``digit`` (None: not a
        digit). Raises UnknownRequest, AmbiguousRequest, NothingToCorrect, AlreadyCorrected or
        FeedbackFull."""
        answered = self.recent.take(request_id, index)
        pixels = answered.pixels
        assert pixels is not None  # take() refuses an answer that kept no image
        record = {
            "label": digit,
            "predicted": answered.predicted,
            "confidence": answered.confidence,
            "model": answered.model,
            "request_id": request_id,
            "index": index,
            "answered_at": iso_utc(answered.wall),
        }
        try:
            record_id = await asyncio.to_thread(self.store.append, record, pixels)
        except BaseException:
            self.recent.release(request_id, index)
            raise
        corrected = NOT_A_DIGIT if digit is None else str(digit)
        self._metrics.observe_correction(str(answered.predicted), corrected)
        return {
            "id": record_id,
            "request_id": request_id,
            "index": index,
            "predicted": answered.predicted,
            "label": digit,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "window_seconds": self.recent.window_s,
            "records": self.store.records,
            "max_records": self.store.max_records,
        }
