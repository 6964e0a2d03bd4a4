"""Dynamic batching: which inputs share one ONNX Runtime call (runs in each worker process).

Every input reaches a worker process as one frame: a request's images for that worker (one
for /predict, up to a model call's worth for /predict/batch) or a tensor of V2 images. The
worker takes the frames that arrived together: the first one it waits for, then every frame
already received, then, when ``max_delay_s`` is above zero, what arrives until that long
after the first, up to ``max_images`` images. It decodes the images of
the batch and runs the model once for all of them. Under load the frames pile up while a
batch runs, so batches grow by themselves; idle, a lone request waits for nobody.

Why in the workers and not in a thread of the server process: a thread that needs the GIL a
few times per batch while the event loop holds it waits for the interpreter's switch interval
each time (docs/performance.md); in the workers the server process has one thread, the event
loop, and never waits for a lock.
"""

from __future__ import annotations

import time
from typing import Protocol, TypeVar


class Sized(Protocol):
    @property
    def count(self) -> int: ...


Item = TypeVar("Item", bound=Sized)


class Inbox(Protocol[Item]):
    def next(self, timeout: float | None) -> Item | None:
        """The next input: waits up to ``timeout`` seconds (None: until one comes or the
        inbox closes, 0: only one already received); None when there is none."""
        ...

    def push_back(self, item: Item) -> None:
        """Make ``item`` the next one ``next`` returns."""
        ...


def collect(inbox: Inbox[Item], max_images: int, max_delay_s: float) -> list[Item] | None:
    """The next batch, in arrival order; None once the inbox is closed and empty.

    A single input larger than ``max_images`` (a V2 request) forms a batch of its own.
    """
    first = inbox.next(None)
    if first is None:
        return None
    batch, size = [first], first.count
    deadline = time.monotonic() + max_delay_s
    while size < max_images:
        item = inbox.next(max(0.0, deadline - time.monotonic()))
        if item is None:
            break
        if size + item.count > max_images:
            inbox.push_back(item)
            break
        batch.append(item)
        size += item.count
    return batch
