"""How many CPUs this process may really use, and thread defaults that leave headroom.

``os.cpu_count()`` reports the host's CPUs. In a container the limit is the cgroup CPU quota
(``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` in v1), and on a shared box it is the affinity
mask. Compute engines such as llama.cpp collapse when they run as many threads as there are
cores and anything else wants one (the browser, Piper, the renderer), so the default for a
compute pool is one CPU less than the budget, and at least one.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup CPU quota in CPUs (``1.5`` for ``150000 100000``), or ``None`` if unlimited."""
    v2 = root / "cpu.max"
    if v2.exists():
        try:
            fields = v2.read_text().split()
        except OSError:
            return None
        if len(fields) != 2 or fields[0] == "max":
            return None
        return _ratio(fields[0], fields[1])
    v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    try:
        quota, period = v1_quota.read_text().strip(), v1_period.read_text().strip()
    except OSError:
        return None
    if quota.startswith("-"):
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cpu_budget(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process can use: affinity mask, capped by the cgroup quota (rounded up)."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        available = min(available, max(1, math.ceil(quota)))
    return max(1, available)


def default_threads(reserve: int = 1, root: Path = CGROUP_ROOT) -> int:
    """Threads for a compute pool: the CPU budget minus ``reserve`` for everything else, >= 1."""
    return max(1, cpu_budget(root) - reserve)


def lower_thread_priority(nice: int) -> None:
    """Raises the calling thread's nice value to ``nice`` (never lowers it; no privilege needed).

    On Linux a nice value belongs to a thread, and threads it starts inherit it, so a pool
    initializer that calls this puts the whole pool's work behind everything at nice 0 in the
    same cgroup: in one pod or on one machine, the llm engine and the speech go first and the
    renderer takes the CPU they leave. Across pods the CPU requests decide instead.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, tid)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
