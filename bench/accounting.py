"""Process accounting: a process's children, and the CPU time and peak memory the kernel counts."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc; empty elsewhere)."""
    pids: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in path.read_text().split()]
    return pids


def _stat_seconds(pid: int, first: int) -> float:
    """Fields `first` and `first + 1` of /proc/<pid>/stat (counted after the command name), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def reaped_cpu(pid: int) -> float:
    """CPU seconds of the reaped children of `pid` (cutime + cstime)."""
    return _stat_seconds(pid, 13)


def tree_cpu(pid: int) -> float:
    """CPU seconds `pid` and its live descendants have used themselves (utime + stime; reaped children aside)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, IndexError):
            total += _stat_seconds(current, 11)
            pending += children(current)
    return total


def cpu_seconds(usage: resource.struct_rusage) -> float:
    """User plus system CPU seconds of a resource usage."""
    return usage.ru_utime + usage.ru_stime


def reaped_cpu_here() -> float:
    """CPU seconds of this process's reaped children so far."""
    return cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN))


def peak_rss_mb(usage: resource.struct_rusage) -> float:
    """Peak resident set size in MB (Linux counts ru_maxrss in KiB)."""
    return usage.ru_maxrss / 1024


def wait_with_usage(proc: subprocess.Popen) -> resource.struct_rusage:
    """Reap `proc`, setting its returncode, and return its resource usage (wait4: this child's alone)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage
