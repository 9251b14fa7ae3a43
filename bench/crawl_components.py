"""Instructions per call of what a platform crawl adds to each page, one component at a time (callgrind).

Each scenario runs N calls of one component's own code with Scrapy's real objects (a crawler from
`scrapy.utils.test.get_crawler`, its SignalManager, bench/crawl_site.py's product pages) inside
`functools.reduce`, and callgrind collects only inside it (`--toggle-collect=functools_reduce`): exact to
the instruction and independent of the machine's load. What docs/benchmarks.md's "Crawl profile" itemises.

Usage: .venv/bin/python bench/crawl_components.py [--calls 500] [scenario ...]
       (a scenario alone, in this interpreter: bench/crawl_components.py --run SCENARIO --calls N)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from record import REPO

SCENARIOS = {
    "netguard_request": "netguard's process_request, the URL already parsed by urlparse_cached (as Scrapy's middlewares do)",
    "netguard_response": "netguard's process_response (same URL)",
    "signal_receiver_sync": "one more receiver of a sync signal (response_received: CloseSpider's page count before)",
    "signal_receiver_async": "one more receiver of item_scraped (an asyncio task each: CloseSpider's item count, the reporter)",
    "report_encode": "the reporter's JSON encoding of one item",
    "extract": "the query spider's extract() of the benchmark's three queries on a product page",
    "hand_callback": "the hand-written spider's extraction of the same fields",
}


def _drive(coro: Any) -> Any:
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the coroutine waited")


def _signals(receivers: int, *, asynchronous: bool, calls: int) -> None:
    from scrapy import signals
    from scrapy.signalmanager import SignalManager

    manager = SignalManager()
    handlers = [lambda item=None, response=None, request=None, spider=None: None for _ in range(receivers)]
    for handler in handlers:
        manager.connect(handler, signal=signals.item_scraped if asynchronous else signals.response_received)
    if asynchronous:
        loop = asyncio.new_event_loop()

        async def send(n: int) -> None:
            for _ in range(n):
                await manager.send_catch_log_async(signal=signals.item_scraped, item={}, response=None, spider=None)

        loop.run_until_complete(send(3))
        functools.reduce(lambda acc, _: loop.run_until_complete(send(calls)), range(1), None)
    else:
        def send_one(acc: Any, _: int) -> None:
            manager.send_catch_log(signal=signals.response_received, response=None, request=None, spider=None)

        send_one(None, 0)
        functools.reduce(send_one, range(calls), None)


def run(name: str, calls: int) -> None:
    """One scenario, `calls` times inside functools.reduce (what callgrind collects)."""
    sys.path[:0] = [str(REPO), str(REPO / "bench")]
    if name.startswith("netguard"):
        from scrapy import Request
        from scrapy.http import HtmlResponse
        from scrapy.utils.httpobj import urlparse_cached
        from scrapy.utils.test import get_crawler

        from spiders.netguard import NetPolicyDownloaderMiddleware

        middleware = NetPolicyDownloaderMiddleware(get_crawler(settings_dict={"CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8"}))
        middleware._verdicts.put(("127.0.0.1", 8000), None)  # resolved once per crawl: not per page
        requests = [Request(f"http://127.0.0.1:8000/static/p/{i:05d}.html") for i in range(calls + 3)]
        responses = [HtmlResponse(url=r.url, request=r, body=b"<html></html>") for r in requests]
        for request in requests:
            urlparse_cached(request)
        if name == "netguard_request":
            step = lambda acc, i: _drive(middleware.process_request(requests[i]))  # noqa: E731
        else:
            step = lambda acc, i: _drive(middleware.process_response(requests[i], responses[i]))  # noqa: E731
        for i in range(calls, calls + 3):
            step(None, i)
        functools.reduce(step, range(calls), None)
    elif name.startswith("signal_receiver"):
        # The difference between two and one receivers is the second's cost: reported by main().
        raise SystemExit("run signal_receiver_* through main()")
    elif name.startswith("_signal"):
        _, _, kind, count = name.split("_")  # _signal_<sync|async>_<receivers>
        _signals(int(count), asynchronous=kind == "async", calls=calls)
    elif name == "report_encode":
        from crawl_site import expected_item

        from spiders.reporting import _ENCODER

        item = {"url": "http://127.0.0.1:8000/static/p/00001.html", **expected_item(1)}
        step = lambda acc, i: _ENCODER.encode(item).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")  # noqa: E731
        functools.reduce(step, range(calls), None)
    elif name in ("extract", "hand_callback"):
        from crawl_site import static_page
        from harness import QUERIES
        from scrapy.http import HtmlResponse

        from spiders.extraction import extract

        pages = [HtmlResponse(url=f"http://127.0.0.1/p/{i}.html", body=static_page(i).encode(), encoding="utf-8")
                 for i in range(calls + 2)]
        for page in pages:
            page.selector  # parsing is the same for both: outside the count  # noqa: B018
        price = re.compile(r"\$(\d+\.\d{2})")

        def first(values: list[str]) -> str | None:
            values = [v.strip() for v in values if v.strip()]
            return values[0] if values else None

        def hand(acc: Any, i: int) -> dict:
            response = pages[i]
            paragraphs = [t.strip() for t in response.css("p::text").getall() if t.strip()]
            return {"url": response.url, "title": first(response.xpath("//title/text()").getall()),
                    "description": " ".join(paragraphs) if paragraphs else None,
                    "price": first(price.findall(response.text))}

        def query(acc: Any, i: int) -> dict:
            response = pages[i]
            return {"url": response.url, **extract(response.selector, QUERIES, text=response.text, regex_timeout=1.0)}

        step = hand if name == "hand_callback" else query
        step(None, calls)
        step(None, calls + 1)
        functools.reduce(step, range(calls), None)
    else:
        raise SystemExit(f"unknown scenario {name}")


def instructions(name: str, calls: int, out: Path) -> int:
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce", f"--callgrind-out-file={out}",
                    "-q", sys.executable, __file__, "--run", name, "--calls", str(calls)], check=True,
                   stdout=subprocess.DEVNULL)
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run(args.run, args.calls)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-crawl-components-"))
    print("| component | instructions per call |\n|---|---:|")
    for name in args.scenarios:
        if name.startswith("signal_receiver"):
            kind = "async" if name.endswith("async") else "sync"
            two, one = (instructions(f"_signal_{kind}_{n}", args.calls, work / f"{name}-{n}.out") for n in (2, 1))
            per_call = (two - one) / args.calls
        else:
            per_call = instructions(name, args.calls, work / f"{name}.out") / args.calls
        print(f"| {SCENARIOS[name]} | {per_call / 1000:,.1f} K |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
