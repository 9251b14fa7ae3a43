"""`runplatform`'s supervisor with real (tiny) child processes: a child that dies is restarted with a
doubling delay, logged with its exit code, the delay starts over once it stays up, and stopping ends
everything, including what a child left in its process group."""

from __future__ import annotations

import io
import os
import re
import sys
import time
from pathlib import Path

from core.management.commands.runplatform import Child, Supervisor
from tests.support import wait_until


def _supervisor(**kwargs) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    return Supervisor(out, **kwargs), out


def _tend_until(supervisor: Supervisor, predicate, timeout: float = 20) -> None:
    def tended():
        supervisor.tend()
        return predicate()

    wait_until(tended, timeout=timeout, interval=0.02, what="the supervisor")


def test_a_dying_child_is_restarted_with_a_doubling_delay_and_its_exit_code_logged(tmp_path):
    supervisor, out = _supervisor(first_delay=0.1, max_delay=0.4, stable_after=60)
    child = supervisor.start(Child("crash", [sys.executable, "-c", "import sys; sys.exit(3)"], env=dict(os.environ)))
    try:
        _tend_until(supervisor, lambda: child.restarts >= 4 and child.restart_at is not None)
        log = out.getvalue()
        delays = [float(d) for d in re.findall(r"crash exited with code 3; restarting it in ([\d.]+) s", log)]
        assert delays[:4] == [0.1, 0.2, 0.4, 0.4]
        assert "crash restarted (pid" in log
    finally:
        supervisor.stop()


def test_the_delay_starts_over_once_a_child_stays_up(tmp_path):
    flag = tmp_path / "crash"
    flag.touch()
    # Exits at once while the flag file exists; then stays up.
    script = f"import os, sys, time\nif os.path.exists({str(flag)!r}): sys.exit(1)\ntime.sleep(60)"
    supervisor, out = _supervisor(first_delay=0.1, max_delay=10, stable_after=0.5)
    child = supervisor.start(Child("flaky", [sys.executable, "-c", script], env=dict(os.environ)))
    try:
        _tend_until(supervisor, lambda: child.restarts >= 2)
        assert child.delay > 0.2  # backed off
        flag.unlink()
        _tend_until(supervisor, lambda: child.restart_at is None and child.proc.poll() is None
                    and time.monotonic() - child.started_at > 0.6)
        supervisor.tend()
        assert child.delay == 0.1  # up for longer than stable_after: the next crash waits 0.1 s again
    finally:
        supervisor.stop()
    assert child.proc.poll() is not None


def test_a_child_that_does_not_become_ready_is_retried(tmp_path):
    attempts = []

    def ready(proc):
        attempts.append(proc.pid)
        if len(attempts) < 3:
            raise RuntimeError("not answering")

    supervisor, out = _supervisor(first_delay=0.05, max_delay=0.1)
    child = Child("slow", [sys.executable, "-c", "import time; time.sleep(60)"], env=dict(os.environ), ready=ready)
    supervisor.children.append(child)
    supervisor._spawn(child)
    try:
        child.proc.kill()
        _tend_until(supervisor, lambda: len(attempts) >= 3 and child.proc.poll() is None)
        assert out.getvalue().count("slow did not come back: not answering") == 2
        assert "slow restarted" in out.getvalue()
    finally:
        supervisor.stop()


def test_stop_ends_what_a_dead_child_left_running_in_its_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    # The child starts a grandchild in its own process group, then dies (as Scrapyd leaving a crawl).
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(0.3)\n"
        "sys.exit(9)\n"
    )
    supervisor, out = _supervisor(first_delay=30)
    child = supervisor.start(Child("scrapyd", [sys.executable, "-c", script], env=dict(os.environ), keeps_crawls=True))
    _tend_until(supervisor, lambda: child.restart_at is not None)
    grandchild = int(pid_file.read_text())
    assert _alive(grandchild)  # Scrapyd's crawls outlive it
    supervisor.stop()
    wait_until(lambda: not _alive(grandchild), timeout=10, what="the orphan to be killed")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
