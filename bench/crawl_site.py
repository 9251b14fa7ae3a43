"""The crawl benchmark's fixture sites (static and script-rendered product pages) and their HTTP server.

Run as a script (`crawl_site.py --serve DIR`), it serves DIR: bench/crawl.py starts it that way, in its
own process, so that serving does not compete with the benchmark for the GIL.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import BenchError

# The words of the product text (the pages differ by how they are combined).
WORDS = [
    "sturdy", "light", "compact", "durable", "handy", "reliable", "quiet", "efficient", "elegant", "simple",
    "robust", "modern", "classic", "versatile", "portable", "precise", "smooth", "bright", "solid", "clever",
]


def _paragraphs(n: int) -> list[str]:
    """Four sentences of product text, different for each page number."""
    return [
        " ".join(WORDS[(n * 7 + k * 3 + j) % len(WORDS)] for j in range(12 + (n + k) % 9)).capitalize() + "."
        for k in range(4)
    ]


def static_page(n: int) -> str:
    """Product page `n` as served: title, heading, paragraphs, price and a small table."""
    paragraphs = "\n".join(f"  <p>{text}</p>" for text in _paragraphs(n))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Widget {n}</title>
<meta name="description" content="Widget number {n}"></head>
<body>
 <header><nav><span>Home</span> / <span>Widgets</span></nav></header>
 <main>
  <h1>Widget {n}</h1>
{paragraphs}
  <div class="price">Price: ${n % 97 + 1}.{n % 100:02d}</div>
  <table class="specs"><tr><th>SKU</th><td>W-{n:05d}</td></tr><tr><th>Weight</th><td>{n % 13 + 1} kg</td></tr></table>
 </main>
 <footer><small>Fixture site for bench/crawl.py</small></footer>
</body></html>
"""


def rendered_page(n: int) -> str:
    """The heading, paragraphs and price exist only once the script has run (no `$` in the source)."""
    data = json.dumps({"name": f"Widget {n}", "paragraphs": _paragraphs(n), "cents": (n % 97 + 1) * 100 + n % 100})
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Widget {n}</title></head>
<body>
 <main id="app"></main>
 <script>
  const data = {data};
  const app = document.getElementById("app");
  const h1 = document.createElement("h1");
  h1.textContent = data.name;
  app.appendChild(h1);
  for (const text of data.paragraphs) {{
    const p = document.createElement("p");
    p.textContent = text;
    app.appendChild(p);
  }}
  const price = document.createElement("div");
  price.className = "price";
  price.textContent = "Price: " + String.fromCharCode(36) + (data.cents / 100).toFixed(2);
  app.appendChild(price);
 </script>
</body></html>
"""


def index_page(title: str, pages: int) -> str:
    """The page linking to every product page (the crawl follows these links one hop)."""
    links = "\n".join(f'  <li><a href="p/{n:05d}.html">Widget {n}</a></li>' for n in range(1, pages + 1))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
 <ul class="products">
{links}
 </ul>
</body></html>
"""


def expected_item(n: int) -> dict[str, Any]:
    """The fields the three queries should extract from product page `n`."""
    return {
        "title": f"Widget {n}",
        "description": " ".join(_paragraphs(n)),
        "price": f"{n % 97 + 1}.{n % 100:02d}",
    }


def make_site(root: Path, pages: int, rendered_pages: int) -> None:
    """site/static/{index.html,p/NNNNN.html} and site/rendered/{index.html,p/NNNNN.html}."""
    for kind, count, make in (("static", pages, static_page), ("rendered", rendered_pages, rendered_page)):
        folder = root / kind / "p"
        folder.mkdir(parents=True)
        (root / kind / "index.html").write_text(index_page(f"{kind.capitalize()} widgets", count), encoding="utf-8")
        for n in range(1, count + 1):
            (folder / f"{n:05d}.html").write_text(make(n), encoding="utf-8")


def serve(directory: str) -> None:
    """Serve `directory` from memory over HTTP/1.1 on a free loopback port (prints the port).

    Also takes POSTs (the reporting extension's sink in `--attribute` runs): reads them, answers 200.
    """
    base = Path(directory)
    files = {"/" + p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without TCP_NODELAY a response's second write waits for the client's delayed ACK.
        disable_nagle_algorithm = True

        def reply(self, status: int, content_type: str, body: bytes) -> None:
            """Headers and body in one write."""
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            path, _, query = self.path.partition("?")
            if query.startswith("delay_ms="):  # a page that takes the time a real server does to answer
                time.sleep(int(query.removeprefix("delay_ms=")) / 1000)
            body = files.get(path)
            if body is None:
                self.reply(404, "text/plain", b"not found")
            else:
                self.reply(200, "text/html; charset=utf-8", body)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.reply(200, "application/json", b'{"ok": true}')

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            # Chromium drops connections it no longer needs (broken pipe, reset): not an error here.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


@dataclass
class FixtureServer:
    """This module serving `directory` in a process of its own, on the port it prints."""

    directory: Path
    proc: subprocess.Popen | None = None
    port: int = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.directory)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            raise BenchError(f"The fixture server did not start: {line!r}")
        self.port = int(line)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fixture site directory (prints the port).")
    parser.add_argument("--serve", required=True, metavar="DIR", help="the directory to serve")
    serve(parser.parse_args(argv).serve)


if __name__ == "__main__":
    main()
