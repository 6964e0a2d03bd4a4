"""How many bytes of request bodies one front-end process holds at once.

Every request body is read whole into memory before its images go to the workers, and while
it is read, joined and framed for a worker it exists three or four times over. The body limit
bounds one request; nothing bounded many: a hundred clients sending 10 MB each took a front
end past 4 GB (docs/performance.md, "Request bodies in flight"), enough for one client with
a hundred connections to have a 2 GiB container killed. So the bytes each connection has
received for requests not yet answered are counted against one budget per process, and a
body that would take the count past it is refused as it arrives (503 ``overloaded`` with
Retry-After, the connection closed): the budget counts bytes received, not declared, so a
client that declares 10 MB and trickles it holds only what it sent. A request alone in the
count is never refused, so any body within DIGITS_MAX_BODY_BYTES can be served.

A client could hold the budget cheaply: a few bodies sent fast to 10 MB, then a byte every few
seconds, keep their average rate above DIGITS_BODY_MIN_BYTES_PER_SECOND for minutes and every
other upload out. So before a body is refused, the bodies that hold bytes and have received
less than that rate's worth in the last STALLED_S are cut (408, as a body too slow is) to make
room for it, as the connection cap makes room by closing the connections waiting longest: a
body arriving at the rate keeps its place; a stalled or dripping one gives it up only when
another needs it. Never one queued behind an earlier request on its connection, or one the
server has stopped reading: those wait on the server, not the client.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from uvicorn.protocols.http.flow_control import FlowControl

from service.errors import RequestTimeout, ServiceError

STALLED_S = 1.0  # a body short of the minimum rate for this long gives way to one arriving


class BodyBudget:
    """The bytes held by every connection of a process; ``limit`` None counts nothing.
    ``min_rate``: bytes a second a body must keep arriving at to keep its place."""

    def __init__(self, limit: int | None, min_rate: float = 0.0) -> None:
        self.limit = limit
        self.held = 0
        self.min_rate = min_rate
        self.moving_bytes = max(1, int(min_rate * STALLED_S))  # a body moved: this many came

    def stalled_message(self) -> str:
        return (
            f"the request body arrived at under {self.min_rate:g} bytes a second for over "
            f"{STALLED_S:g} s while other bodies needed the server's room; retry"
        )


class Holding:
    """One connection's share of the budget: what each of its requests not yet answered has
    received, oldest first (pipelined requests are answered in order)."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.requests: deque[int] = deque()
        self.receiving = False  # the newest request's body is still arriving
        self.moved = 0.0  # when it last moved: ``budget.moving_bytes`` came (monotonic)
        self.arrived = 0  # bytes since then

    def begin(self) -> None:
        """A request's head is in; its body is counted from here."""
        self.requests.append(0)
        self.receiving, self.moved, self.arrived = True, time.monotonic(), 0

    def done(self) -> None:
        """The newest request's body is whole."""
        self.receiving = False

    def stalled(self, now: float) -> bool:
        """Whether a body still arriving holds bytes, has not moved for STALLED_S, and is its
        connection's only request not yet answered (one behind another waits on the server,
        and cutting it would drop it unanswered)."""
        alone = len(self.requests) == 1 and self.requests[0] > 0
        return self.receiving and alone and now - self.moved > STALLED_S

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes of the newest request's body; False when that would take
        the process past its budget while other bodies are held (nothing is counted then)."""
        budget, requests = self.budget, self.requests
        if not requests or budget.limit is None:
            return True
        others = budget.held - requests[-1]
        if others and budget.held + size > budget.limit:
            return False
        requests[-1] += size
        budget.held += size
        self.arrived += size
        if self.arrived >= budget.moving_bytes:  # a byte now and then is not moving
            self.moved, self.arrived = time.monotonic(), 0
        return True

    def answered(self) -> None:
        """The oldest request's answer is out: its body is no longer held."""
        if self.requests:
            self.budget.held -= self.requests.popleft()

    def release(self) -> None:
        """The connection is closed or refused: none of its bodies will be answered."""
        self.budget.held -= sum(self.requests)
        self.requests.clear()

    def make_room(self, connections: Iterable[Holder]) -> list[Holder]:
        """Cut the bodies of ``connections`` that have stalled (not this one's), freeing their
        bytes; those cut."""
        now, message = time.monotonic(), self.budget.stalled_message()
        stalled = [
            c
            for c in connections
            if c.holding is not self and c.holding.stalled(now) and not c.flow.read_paused
        ]
        for connection in stalled:
            connection.cut_short(RequestTimeout(message))
        # Those the refusal freed (one already refused or closing was not cut again).
        return [connection for connection in stalled if not connection.holding.requests]

    def refusal(self, size: int) -> str:
        """Why a ``size``-byte read was refused, for the client."""
        return (
            f"the server holds {self.budget.held} bytes of request bodies, and {size} more "
            f"would take it past its limit of {self.budget.limit}; retry later"
        )


class Holder(Protocol):
    """A connection with a share of the budget (service/http/connections.py)."""

    holding: Holding
    flow: FlowControl  # uvicorn's: reading paused while the app has not taken the body

    @property
    def client(self) -> tuple[str, int] | None: ...

    def cut_short(self, error: ServiceError) -> None:
        """Refuse the request whose body is arriving with ``error``, and close."""
