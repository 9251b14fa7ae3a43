"""A CPU cap for a process tree: a machine of `cores` cores, modelled on a shared machine (Linux cgroup v1 `cpu`).

bench/scale.py asks whether a second web process adds capacity. On a 2-core machine that other work
shares, neither one web process nor two is limited by itself: both get what the scheduler leaves
them. Capping each web process at the same CPU (a CFS quota: `cores` CPU-seconds per second at
most) makes each one a web machine of that size, so "two" has twice the web CPU "one" has, and the
ratio says what the rest of the topology (proxy, database, object store) lets a second web process
add. The cap's weight is raised (cpu.shares) so that a capped process gets its quota when other
work competes; it can never take more than the quota.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from accounting import children

ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
SHARES = 4096  # four times a session's weight: the quota, not other work, bounds a capped process


def available() -> bool:
    """Whether this machine lets the bench create cgroups in the v1 `cpu` hierarchy."""
    return (ROOT / "cpu.cfs_quota_us").exists() and os.access(ROOT, os.W_OK)


class CpuCap:
    """A cgroup limiting the processes put in it to `cores` cores; `close()` removes it."""

    def __init__(self, name: str, cores: float) -> None:
        self.cores = cores
        self.path = ROOT / name
        self.path.mkdir(exist_ok=True)
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        self.limit(True)

    def limit(self, on: bool) -> None:
        """The cap on (its quota, its raised weight) or off (no quota, the weight of any session)."""
        (self.path / "cpu.cfs_quota_us").write_text(str(int(self.cores * PERIOD_US)) if on else "-1")
        (self.path / "cpu.shares").write_text(str(SHARES if on else 1024))

    def add(self, pid: int) -> None:
        """Put process `pid` (all its threads) in the cap; its children stay where they are, those it
        starts later are in the cap too."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def add_tree(self, pid: int) -> list[int]:
        """Put `pid` and its descendants in the cap (processes they start later are in it too)."""
        moved, pending = [], [pid]
        while pending:
            current = pending.pop()
            with contextlib.suppress(ProcessLookupError, OSError):
                self.add(current)
                moved.append(current)
            pending += children(current)
        return moved

    def close(self) -> None:
        """Move what is left to the root group and remove the cgroup."""
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (ROOT / "cgroup.procs").write_text(pid)
            self.path.rmdir()
