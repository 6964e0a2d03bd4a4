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
# cgroup v1's cpu controller, mounted alone or with cpuacct (microseconds per period, -1: none)
CGROUP_V1_CPU = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"))


def resolve_model_path(path: Path) -> Path:
    """An absolute path as given; a relative one against the cwd, then the repository root."""
    if path.is_absolute():
        return path
    for base in (Path.cwd(), _PACKAGE_ROOT):
        candidate = base / path
        if candidate.exists():
            return candidate.resolve()
    return (_PACKAGE_ROOT / path).resolve()


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX, cpu_v1: tuple[Path, ...] = CGROUP_V1_CPU) -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU quota
    (cgroup v2's ``cpu.max``, else cgroup v1's ``cpu.cfs_quota_us`` over its period).

    A pod limited to one CPU on a 32-core node sees 32 cores through the affinity mask alone;
    one worker process per core there would mean 32 workers fighting over one CPU's quota.
    On a cgroup v1 host (``--cpus=1`` on 2 cores started 2 workers) only v1 has the quota.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    quota = _quota_v2(cpu_max)
    if quota is None:
        quota = _quota_v1(cpu_v1)
    return cores if quota is None else min(cores, max(1, math.ceil(quota)))


def _quota_v2(cpu_max: Path) -> float | None:
    """cgroup v2's quota in CPUs; None without one (``max``, no file, a format we do not
    know)."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _quota_v1(roots: tuple[Path, ...]) -> float | None:
    """cgroup v1's quota in CPUs, from the first of ``roots`` (the cpu controller's mount:
    a container's own cgroup there) that has one; None without one (-1: no limit)."""
    for root in roots:
        try:
            quota = int((root / "cpu.cfs_quota_us").read_text())
            period = int((root / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None
