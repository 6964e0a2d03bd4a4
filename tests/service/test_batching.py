"""The batching policy: what arrived together runs together, within the size and delay limits."""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.workers.batching import collect


@dataclass
class Item:
    name: str
    count: int = 1


class ScriptedInbox:
    """Items that 'arrive' at given times (seconds after the first ``next``); None = closed."""

    def __init__(self, arrivals: list[tuple[float, Item]]) -> None:
        self.arrivals = list(arrivals)
        self.pushed: list[Item] = []
        self.started: float | None = None
        self.waits: list[float | None] = []

    def next(self, timeout: float | None) -> Item | None:
        self.waits.append(timeout)
        if self.pushed:
            return self.pushed.pop()
        if self.started is None:
            self.started = time.monotonic()
        if not self.arrivals:
            return None
        at, item = self.arrivals[0]
        due = self.started + at - time.monotonic()
        if timeout is not None and due > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, due))
        self.arrivals.pop(0)
        return item

    def push_back(self, item: Item) -> None:
        self.pushed.append(item)


def names(batch: list[Item] | None) -> list[str]:
    assert batch is not None
    return [item.name for item in batch]


def test_without_delay_a_batch_is_what_had_already_arrived() -> None:
    inbox = ScriptedInbox([(0, Item("a")), (0, Item("b")), (0, Item("c")), (0.05, Item("late"))])
    assert names(collect(inbox, max_images=32, max_delay_s=0)) == ["a", "b", "c"]
    assert inbox.waits[0] is None and all(wait == 0 for wait in inbox.waits[1:])
    assert names(collect(inbox, max_images=32, max_delay_s=0)) == ["late"]
    assert collect(inbox, max_images=32, max_delay_s=0) is None  # closed: the worker exits


def test_a_delay_waits_for_later_inputs_but_not_past_it() -> None:
    arrivals = [(0, Item("a")), (0.02, Item("b")), (0.3, Item("too late"))]
    inbox = ScriptedInbox(arrivals)
    started = time.monotonic()
    assert names(collect(inbox, max_images=32, max_delay_s=0.1)) == ["a", "b"]
    assert time.monotonic() - started >= 0.09  # it waited for more: a slow machine waits longer
    # ...but never past the delay: each wait is what is left of it, and they shrink.
    waits = [wait for wait in inbox.waits[1:] if wait is not None]
    assert len(waits) == 2 and 0.1 >= waits[0] > waits[1] > 0
    assert names(collect(inbox, max_images=32, max_delay_s=0.1)) == ["too late"]


def test_the_size_limit_counts_images_and_keeps_the_overflow_for_the_next_batch() -> None:
    inbox = ScriptedInbox([(0, Item("a", 3)), (0, Item("b", 4)), (0, Item("c", 2))])
    assert names(collect(inbox, max_images=8, max_delay_s=1.0)) == ["a", "b"]
    assert names(collect(inbox, max_images=8, max_delay_s=0)) == ["c"]


def test_an_input_larger_than_the_limit_runs_alone() -> None:
    inbox = ScriptedInbox([(0, Item("v2", 256)), (0, Item("a"))])
    assert names(collect(inbox, max_images=32, max_delay_s=0)) == ["v2"]
    assert names(collect(inbox, max_images=32, max_delay_s=0)) == ["a"]
