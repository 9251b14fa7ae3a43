"""A loopback HTTP/1.1 server whose paths each test scripts, recording every request path.

    routes = {"": page, "redirect": redirect}            # "" answers every other path
    with ScriptedSite(routes) as site:
        fetch(f"{site.url}/redirect?to=/page")
        assert site.hits == ["/redirect?to=/page", "/page"]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Route = Callable[["Handler", dict[str, str]], None]


class Handler(BaseHTTPRequestHandler):
    """Calls the route named by the request's path (query parameters as a dict)."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        parts = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        routes = self.server.routes
        routes.get(parts.path.strip("/"), routes[""])(self, query)

    def send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def redirect(handler: Handler, query: dict[str, str]) -> None:
    """/redirect?to=<url>[&code=30x]"""
    handler.send(int(query.get("code", 302)), b"", {"Location": query["to"]})


def html(body: str) -> Route:
    """A route answering 200 with this HTML."""

    def route(handler: Handler, query: dict[str, str]) -> None:
        handler.send(200, body.encode(), {"Content-Type": "text/html; charset=utf-8"})

    return route


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits: list[str]
    routes: Mapping[str, Route]


class ScriptedSite:
    """The server on a free port of `host` (any loopback address), serving in a thread while open."""

    def __init__(self, routes: Mapping[str, Route], *, host: str = "127.0.0.1") -> None:
        self.server = _Server((host, 0), Handler)
        self.server.hits = []
        self.server.routes = routes
        self.host = host
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def hits(self) -> list[str]:
        return self.server.hits

    def __enter__(self) -> ScriptedSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
