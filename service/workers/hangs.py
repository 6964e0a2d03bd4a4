"""Which images hang their workers: past DIGITS_PREPROCESS_TIMEOUT_SECONDS of the worker's own
CPU, not only of the clock.

The progress slot (progress.py) says since when a worker has been on its image, by the clock.
On a machine short of CPU (other processes, a pod's CPU quota) a valid 40-megapixel image
that decodes in 1.5 s alone took more than the timeout by the clock, and was answered 400
``invalid_image`` with its worker killed, telling the client its file was bad. So past the
timeout by the clock, the worker's CPU time (/proc/<pid>/stat, read in the watchdog's sweep,
never in the image's path) decides: the image hangs its worker once the worker has spent the
timeout's worth of CPU on it, or has not moved at all (no CPU) for as long (stopped, or
blocked); a worker that is slowly getting through it is starved, and left to finish.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

from service.workers.connection import WorkerConnection
from service.workers.progress import IDLE, Progress

IDLE_STANDSTILL_S = 1.0
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has used; inf when it cannot be read
    (then the clock alone decides, as before)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return math.inf
    fields = stat.rpartition(b")")[2].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime


@dataclass(slots=True)
class _Watched:
    """A worker's image as the sweeps saw it: first when and at what CPU time, and when its
    CPU time last moved."""

    image: tuple[int, int]  # request id, position in its frame
    first_seen: float
    cpu_at_first: float
    moved: float
    cpu_at_move: float


class HangWatch:
    """The watchdog's judge: whether a worker's current image is past the timeout."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._watched: weakref.WeakKeyDictionary[WorkerConnection, _Watched] = (
            weakref.WeakKeyDictionary()
        )

    def overdue(self, worker: WorkerConnection, progress: Progress, now: float) -> bool:
        """Whether ``worker`` is past the timeout on the image ``progress`` names, or, idle
        with frames waiting for it, has not taken them (stopped while idle: its images were
        never begun, so never judged, and waited for ever while /readyz said ready)."""
        image, since = (progress.request_id, progress.index), progress.since
        waiting = since == IDLE  # for a frame it was sent, not decoding
        if waiting:
            oldest = next(iter(worker.outstanding.values()), None)
            if oldest is None:
                self._watched.pop(worker, None)
                return False
            image, since = (-1, oldest.request_id), oldest.created  # -1: no image begun
        cpu = cpu_seconds(worker.process.pid)
        watched = self._watched.get(worker)
        if watched is None or watched.image != image:
            watched = self._watched[worker] = _Watched(image, now, cpu, now, cpu)
        elif cpu > watched.cpu_at_move:
            watched.moved, watched.cpu_at_move = now, cpu
        if now - since <= self.timeout_s:
            return False
        if waiting:  # only a standstill is a hang, and taking a frame costs less CPU than
            # one clock tick: a second at least, to see one
            return now - watched.moved > max(self.timeout_s, IDLE_STANDSTILL_S)
        # Before it was first seen (under a sweep's interval), the clock counts as CPU.
        used = (watched.first_seen - since) + (cpu - watched.cpu_at_first)
        return used > self.timeout_s or now - watched.moved > self.timeout_s
