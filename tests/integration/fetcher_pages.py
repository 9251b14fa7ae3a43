"""Scripted pages for the fetcher tests: good pages, and the bad ones a fetcher must survive."""

from __future__ import annotations

import contextlib
import time

from tests.scripted import Handler, Route, html, redirect

BIG = 50 * 1024 * 1024
_CHUNK = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>\n"


def _big(*, length: bool):
    def route(handler: Handler, query: dict[str, str]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        if length:
            handler.send_header("Content-Length", str(BIG))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        with contextlib.suppress(OSError):  # the fetcher stops reading, as it should
            for _ in range(BIG // len(_CHUNK)):
                handler.wfile.write(_CHUNK)

    return route


def hang(handler: Handler, query: dict[str, str]) -> None:
    """Answers after `seconds` (default 30): a subresource that keeps `load` from firing (with `then`, a
    redirect there)."""
    time.sleep(float(query.get("seconds", 30)))
    with contextlib.suppress(OSError):
        if "then" in query:
            handler.send(302, b"", {"Location": query["then"]})
        else:
            handler.send(200, b"GIF89a", {"Content-Type": "image/gif"})


def set_cookie(handler: Handler, query: dict[str, str]) -> None:
    body = (
        "<html><body><h1>setter</h1><img src='/hang?seconds=1'>"
        "<script>localStorage.setItem('who', 'alice'); document.cookie = 'js=alice; path=/';</script></body></html>"
    )
    handler.send(200, body.encode(), {"Content-Type": "text/html", "Set-Cookie": "user=alice; Path=/"})


def show_cookie(handler: Handler, query: dict[str, str]) -> None:
    cookie = handler.headers.get("Cookie") or "none"
    body = (
        f"<html><body><p id='header'>{cookie}</p><p id='storage'></p><p id='js'></p>"
        "<script>document.getElementById('storage').textContent = localStorage.getItem('who') || 'none';"
        "document.getElementById('js').textContent = document.cookie || 'none';</script></body></html>"
    )
    handler.send(200, body.encode(), {"Content-Type": "text/html"})


# Every kind of state a page can leave in its browser context, written by /setall (which then goes to
# /readall in the same context: the control), read by /readall into #state.
_SET_ALL = """<html><body><script src='/cached.js'></script><script>
(async () => {
  document.cookie = 'js=alice; path=/'; localStorage.setItem('who', 'alice'); sessionStorage.setItem('who', 'alice');
  await new Promise(done => { const open = indexedDB.open('db', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('s');
    open.onsuccess = () => { const t = open.result.transaction('s', 'readwrite'); t.objectStore('s').put('alice', 'who');
                             t.oncomplete = done; }; });
  await (await caches.open('c')).put('/probe', new Response('alice'));
  await navigator.serviceWorker.register('/sw.js'); await navigator.serviceWorker.ready;
  location.href = '/readall';
})();
</script></body></html>"""
_READ_ALL = """<html><body><p id='state'></p><script src='/cached.js'></script><script>
(async () => {
  const state = {cookie: document.cookie, local: localStorage.getItem('who'), session: sessionStorage.getItem('who'),
                 idb: (await indexedDB.databases()).map(d => d.name).join(), cache: (await caches.keys()).join(),
                 workers: (await navigator.serviceWorker.getRegistrations()).length,
                 probe: await (await fetch('/swprobe')).text()};
  document.getElementById('state').textContent = JSON.stringify(state);
})();
</script></body></html>"""


def _script(body: bytes, headers: dict[str, str] | None = None) -> Route:
    def route(handler: Handler, query: dict[str, str]) -> None:
        handler.send(200, body, {"Content-Type": "application/javascript", **(headers or {})})

    return route


def echo_headers(handler: Handler, query: dict[str, str]) -> None:
    body = f"<html><body><p id='lang'>{handler.headers.get('Accept-Language', 'none')}</p></body></html>"
    handler.send(200, body.encode(), {"Content-Type": "text/html"})


def binary(handler: Handler, query: dict[str, str]) -> None:
    handler.send(200, bytes(range(256)) * 64, {"Content-Type": "application/octet-stream"})


def loop(handler: Handler, query: dict[str, str]) -> None:
    handler.send(302, b"", {"Location": "/loop"})


def attachment(handler: Handler, query: dict[str, str]) -> None:
    handler.send(200, b"a,b\n1,2\n", {"Content-Type": "text/csv", "Content-Disposition": "attachment; filename=x.csv"})


def meta_loop(handler: Handler, query: dict[str, str]) -> None:
    """A page that refreshes itself to the next one at once, for ever."""
    n = int(query.get("n", 0))
    body = f"<html><head><meta http-equiv='refresh' content='0;url=/metaloop?n={n + 1}'></head><body>{n}</body></html>"
    handler.send(200, body.encode(), {"Content-Type": "text/html"})


ROUTES = {
    "": html("<html><head><title>Plain</title></head><body><h1>Plain page</h1><p>Some <b>bold</b> text.</p></body></html>"),
    "redirect": redirect,
    "loop": loop,
    "big": _big(length=True),
    "big-chunked": _big(length=False),
    "endless": html("<html><body><h1>endless</h1><script>while (true) {}</script></body></html>"),
    "hugedom": html(
        "<html><body><div id='root'></div><script>const root = document.getElementById('root');"
        "for (let i = 0; i < 200000; i++) { const d = document.createElement('div'); d.textContent = 'node ' + i;"
        " root.appendChild(d); }</script></body></html>"
    ),
    "neverload": html("<html><body><h1>waiting</h1><img src='/hang'></body></html>"),
    "slowload": html("<html><body><h1>slow to load</h1><img src='/hang?seconds=2'></body></html>"),
    "hang": hang,
    "setcookie": set_cookie,
    "showcookie": show_cookie,
    "headers": echo_headers,
    "binary": binary,
    "tall": html("<html><body style='margin:0'><div style='height:3000px;background:#abc'>tall</div></body></html>"),
    # Busy from the moment the capture reads the page (its HTML, or printing it): a script that never
    # yields, or dialogs one after another for ever.
    "busy-when-read": html("<html><body><h1>busy</h1><script>Object.defineProperty(document, 'documentElement', "
                           "{get() { while (true) {} }});</script></body></html>"),
    "dialogs-when-printed": html("<html><body><h1>dialogs</h1><script>addEventListener('beforeprint', () => "
                                 "{ for (;;) alert(1); });</script></body></html>"),
    # Goes by itself, 100 ms after load, to another document (a slow answer, then a 404).
    "navigates-after-load": html("<html><body><h1>first</h1><script>addEventListener('load', () => setTimeout(() => "
                                 "location.href = '/hang?seconds=1&then=/notfound', 100));</script></body></html>"),
    # Memory without end: DOM nodes of 10 kB each, added until something stops the page.
    "memory-hog": html("<html><body><h1>hog</h1><script>for (;;) document.body.appendChild("
                       "document.createElement('div')).textContent = 'x'.repeat(10000) + Math.random();</script></body></html>"),
    "metaloop": meta_loop,
    "attachment": attachment,
    "setall": html(_SET_ALL),
    "readall": html(_READ_ALL),
    "cached.js": _script(b"var cached = 1;", {"Cache-Control": "public, max-age=3600"}),
    "sw.js": _script(b"self.addEventListener('fetch', e => { if (e.request.url.includes('swprobe')) "
                     b"e.respondWith(new Response('from the worker')); });"),
    "swprobe": lambda handler, query: handler.send(200, b"from the network", {"Content-Type": "text/plain"}),
    "notfound": lambda handler, query: handler.send(404, b"<html><body><h1>Gone fishing</h1></body></html>",
                                                    {"Content-Type": "text/html"}),
}
