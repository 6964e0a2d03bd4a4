"""Batches made on a second thread: stopped with the run, not left inside torch at exit."""

from __future__ import annotations

import threading
import time

from training.batches import AHEAD, feed


def test_closing_the_feed_early_stops_its_thread() -> None:
    """Ctrl-C left the thread making batches (a daemon, inside a torch op) when the
    interpreter exited: 2 of 4 interrupted runs ended in SIGABRT instead of status 130."""
    made: list[int] = []

    def make(step: int) -> int:
        time.sleep(0.01)
        made.append(step)
        return step

    batches = feed(make, steps=1000, ahead=True)
    assert [next(batches), next(batches)] == [0, 1]
    batches.close()
    assert not any(thread.name == "batches" for thread in threading.enumerate())
    assert len(made) <= 2 + AHEAD + 1  # what was queued, and the one being made


def test_a_feed_run_to_the_end_makes_every_step_once() -> None:
    assert list(feed(lambda step: step * 2, steps=50, ahead=True)) == list(range(0, 100, 2))
    assert list(feed(lambda step: step, steps=3, ahead=False)) == [0, 1, 2]
