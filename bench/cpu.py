"""The CPU a running service uses, by role: its front ends (event loops) and its workers.

Read from /proc (Linux): each process's user + system time, and which processes descend from
the service's own; a worker is a process running service.workers.process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
WORKER_MARK = b"service.workers.process"


@dataclass(frozen=True)
class CpuSeconds:
    front_ends: float
    workers: float

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.front_ends - other.front_ends, self.workers - other.workers)

    def __add__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.front_ends + other.front_ends, self.workers + other.workers)


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) * _TICK_S


def cpu_by_role(root: int) -> CpuSeconds:
    """CPU seconds so far of ``root`` and its descendants, by role."""
    stats = {int(pid): stat for pid in os.listdir("/proc") if pid.isdigit() if (stat := _stat(pid))}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    front = workers = 0.0
    pending = [root]
    while pending:
        pid = pending.pop()
        if pid not in stats:
            continue
        pending += children.get(pid, [])
        try:
            worker = WORKER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if worker:
            workers += stats[pid][1]
        else:
            front += stats[pid][1]
    return CpuSeconds(front, workers)
