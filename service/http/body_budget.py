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
"""

from __future__ import annotations

from collections import deque


class BodyBudget:
    """The bytes held by every connection of a process; ``limit`` None counts nothing."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.held = 0


class Holding:
    """One connection's share of the budget: what each of its requests not yet answered has
    received, oldest first (pipelined requests are answered in order)."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.requests: deque[int] = deque()

    def begin(self) -> None:
        """A request's head is in; its body is counted from here."""
        self.requests.append(0)

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
        return True

    def answered(self) -> None:
        """The oldest request's answer is out: its body is no longer held."""
        if self.requests:
            self.budget.held -= self.requests.popleft()

    def release(self) -> None:
        """The connection is closed or refused: none of its bodies will be answered."""
        self.budget.held -= sum(self.requests)
        self.requests.clear()

    def refusal(self, size: int) -> str:
        """Why a ``size``-byte read was refused, for the client."""
        return (
            f"the server holds {self.budget.held} bytes of request bodies, and {size} more "
            f"would take it past its limit of {self.budget.limit}; retry later"
        )
