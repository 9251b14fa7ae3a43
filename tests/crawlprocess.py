"""Run the platform's query spider as a real `scrapy crawl` subprocess that may reach loopback only.

In the subprocess a sitecustomize module fails, and records, any connection to a non-loopback
address and any DNS lookup of a name other than localhost (and plays DNS rebinding for "rebind.test").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [{"name": "title", "type": "css", "query": "title::text"}]

# Loaded by every crawl subprocess: any connection to a non-loopback address, or DNS lookup of a
# name other than localhost, is recorded in NETGUARD_TEST_LOG and fails. "rebind.test" plays DNS
# rebinding: a public address to getaddrinfo, loopback to gethostbyname (which Twisted connects with).
GUARD = textwrap.dedent(
    """
    import ipaddress, os, socket

    _log = os.environ["NETGUARD_TEST_LOG"]
    _connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def _record(what):
        with open(_log, "a") as fh:
            fh.write(repr(what) + "\\n")

    def _loopback(address):
        try:
            return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
        except (ValueError, TypeError, IndexError):
            return False

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            _record(("connect", address))
            raise OSError(13, "test guard: non-loopback connection")
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            _record(("connect", address))
            return 13
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host == "rebind.test":
            # A rebinding name: public for the first look (the middleware)...
            return _getaddrinfo("93.184.215.14", *args, **kwargs)
        try:
            return _getaddrinfo(host, *args, **{**kwargs, "flags": socket.AI_NUMERICHOST})
        except socket.gaierror:
            if host not in ("localhost", b"localhost"):
                _record(("dns", host))
                raise
            return _getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host):
        if host == "rebind.test":
            return "127.0.0.1"  # ...and loopback by the time Twisted connects
        return getaddrinfo(host, None, socket.AF_INET)[0][4][0]

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo, socket.gethostbyname = getaddrinfo, gethostbyname
    """
)



def crawl(
    tmp_path: Path,
    sources: list[str],
    *,
    config: dict[str, Any] | None = None,
    arguments: dict[str, str] | None = None,
    **settings: str,
) -> tuple[str, list[str]]:
    """Run the query spider on `sources` (plus `config`); return its log and the guard's record of attempts."""
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    attempts = tmp_path / "attempts.log"
    attempts.touch()
    arguments = {"config": json.dumps({"source": sources, "queries": QUERIES, **(config or {})}), **(arguments or {})}
    command = [sys.executable, "-m", "scrapy", "crawl", "query"]
    for name, value in arguments.items():
        command += ["-a", f"{name}={value}"]
    for name, value in {"RETRY_TIMES": "0", **settings}.items():
        command += ["-s", f"{name}={value}"]
    env = {
        **os.environ,
        "SCRAPY_SETTINGS_MODULE": "spiders.settings",
        "PYTHONPATH": os.pathsep.join([str(guard_dir), str(ROOT)]),
        "NETGUARD_TEST_LOG": str(attempts),
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stderr, attempts.read_text().splitlines()


def stat(log: str, name: str) -> int | None:
    """Read an integer stat from the stats Scrapy dumps when it closes."""
    match = re.search(rf"'{re.escape(name)}': (\d+)", log)
    return int(match.group(1)) if match else None
