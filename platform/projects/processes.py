"""Running a deploy's child process (a project's `scrapy list`, an environment build) within a time limit."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from .errors import DeployFailed


def base_env(*, home: Path | str, pythonpath: Path | str) -> dict[str, str]:
    """The environment a deploy's child starts from: nothing of the worker's own but PATH."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(pythonpath),
        "PYTHONIOENCODING": "UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
    }


def run_bounded(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float, too_long: str) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr) of `args`, run in its own session; past `timeout` its whole process
    group is killed and DeployFailed(`too_long`) raised (project code may start children of its own)."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DeployFailed(too_long) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, stdout, stderr
