"""Crawl logs served the way Scrapyd serves them: Twisted's static file resource, in a child process
on a free loopback port, over a folder the test writes (`logs/<project>/<spider>/<job>.log`).

`status.json` is a static file too (Twisted ignores the query string): it answers every job's state,
so the platform sees the crawl as `finished` (or what the test writes with `set_state`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from tests.support import free_port, wait_until


class StaticLogServer:
    """`python -m twisted web --path <root>`; `.url` is the node's base URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        (root / "logs").mkdir(parents=True, exist_ok=True)
        self.set_state("finished")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twisted", "web", "--path", str(root),
             "--listen", f"tcp:port={self.port}:interface=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self._up, timeout=30, what="twisted static server")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("twisted web exited")
        try:
            return requests.get(self.url + "status.json", timeout=1).ok
        except requests.RequestException:
            return False

    def set_state(self, state: str | None) -> None:
        (self.root / "status.json").write_text(json.dumps({"status": "ok", "currstate": state}))

    def log_path(self, project: str, spider: str, job_id: str) -> Path:
        path = self.root / "logs" / project / spider / f"{job_id}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
