"""What the settings resolve against the machine they run on: files named relative to the
repository, and the CPU cores this process may use."""

from __future__ import annotations

import math
import os
from pathlib import Path

# The package sits at <repo>/service, so the repository (and models/) is its parent. The
# current directory is tried first (the container's WORKDIR): installed wheels have no models/
# beside the package.
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def resolve_model_path(path: Path) -> Path:
    """An absolute path as given; a relative one against the cwd, then the repository root."""
    if path.is_absolute():
        return path
    for base in (Path.cwd(), _PACKAGE_ROOT):
        candidate = base / path
        if candidate.exists():
            return candidate.resolve()
    return (_PACKAGE_ROOT / path).resolve()


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU quota.

    A pod limited to one CPU on a 32-core node sees 32 cores through the affinity mask alone;
    one worker process per core there would mean 32 workers fighting over one CPU's quota.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 here, or a format we do not know: no cap
        pass
    return cores
