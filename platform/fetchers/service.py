"""The fetcher service: an aiohttp server that fetches pages for the synchronous API (fetchers.client).

`POST /fetch` takes a FetchSpec as JSON and answers its FetchOutcome; `GET /health` says how busy the
service is. Capacity: FETCHER_CONCURRENCY static fetches (in worker threads: jobs.fetch is blocking)
and FETCHER_RENDER_CONCURRENCY browser pages at once; up to FETCHER_QUEUE requests wait for a slot,
past that the answer is 503 with Retry-After. A request's timeout_ms counts from its arrival, queueing
included: when it passes, the answer (status_code 504) goes at once, and the work still running is
cancelled in the background (a page's context is closed, a static fetch ends at its own deadline).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from typing import Any

from aiohttp import web
from django.conf import settings

from spiders.netguard import activate
from spiders.netpolicy import NetPolicy

from .browser import Renderer
from .client import FORMATS, WAIT_STRATEGIES, FetchOutcome, FetchSpec
from .outcomes import failure
from .static import fetch_static, max_bytes

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


def needs_browser(spec: FetchSpec) -> bool:
    """Screenshots and PDFs need a browser whatever render says; downloads never use one."""
    return spec.mode == "page" and (spec.render or spec.format in ("screenshot", "pdf"))


def spec_error(spec: FetchSpec) -> str | None:
    if spec.mode not in ("page", "download"):
        return f"mode must be page or download, not {spec.mode!r}"
    if spec.format not in FORMATS:
        return f"format must be one of {', '.join(FORMATS)}, not {spec.format!r}"
    if spec.wait_strategy not in WAIT_STRATEGIES:
        return f"wait_strategy must be one of {', '.join(WAIT_STRATEGIES)}"
    if not isinstance(spec.timeout_ms, int) or spec.timeout_ms <= 0:
        return "timeout_ms must be a positive integer"
    # The web side sends validated specs; anything else posted here is refused, not a 500 from deep inside.
    if not isinstance(spec.url, str):
        return "url must be a string"
    if not isinstance(spec.wait_timeout_ms, int) or spec.wait_timeout_ms <= 0:
        return "wait_timeout_ms must be a positive integer"
    if spec.max_bytes is not None and (not isinstance(spec.max_bytes, int) or spec.max_bytes < 0):
        return "max_bytes must be a non-negative integer or null"
    if not all(isinstance(value, bool) for value in (spec.render, spec.full_page)):
        return "render and full_page must be booleans"
    if spec.wait_selector is not None and not isinstance(spec.wait_selector, str):
        return "wait_selector must be a string or null"
    if not all(isinstance(name, str) and isinstance(value, str) for name, value in spec.headers.items()):
        return "headers must map strings to strings"
    if not all(isinstance(url, str) for url in spec.proxy_urls):
        return "proxy_urls must be strings"
    if not all(isinstance(query, dict) for query in spec.queries):
        return "queries must be objects"
    if spec.item_selector is not None and not isinstance(spec.item_selector, dict):
        return "item_selector must be an object or null"
    return None


class Fetcher:
    """Slots, the wait queue, the thread pool of static fetches and the browser."""

    def __init__(
        self, *, concurrency: int, render_concurrency: int, queue: int, policy: NetPolicy, page_memory_mb: int = 0
    ) -> None:
        self.policy = policy
        self.static_slots = asyncio.Semaphore(concurrency)
        self.render_slots = asyncio.Semaphore(render_concurrency)
        self.queue = queue
        self.waiting = 0
        self.running = 0
        self.served = 0
        # A static fetch whose request timed out still runs until its own deadline: room for those.
        self.threads = concurrent.futures.ThreadPoolExecutor(concurrency * 2, thread_name_prefix="fetch")
        self.renderer = Renderer(page_memory_mb=page_memory_mb)
        self._cleanups: set[asyncio.Task] = set()  # what rendered requests do after answering

    async def start(self) -> None:
        await self.renderer.start()

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=15)
        await self.renderer.close()
        self.threads.shutdown(wait=False, cancel_futures=True)

    def full(self, spec: FetchSpec) -> bool:
        slots = self.render_slots if needs_browser(spec) else self.static_slots
        return slots.locked() and self.waiting >= self.queue

    async def fetch(self, spec: FetchSpec, started: float) -> FetchOutcome:
        """The outcome of `spec`, or a 504 one the moment its timeout_ms (counted from `started`) passes."""
        deadline = started + spec.timeout_ms / 1000
        task = asyncio.ensure_future(self._fetch(spec, started, deadline))
        done, _pending = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        if task in done:
            return task.result()
        task.cancel()  # its clean-up (closing the page's context) goes on without this answer waiting
        return failure(spec, started, 504, f"Timed out after {spec.timeout_ms} ms")

    async def _fetch(self, spec: FetchSpec, started: float, deadline: float) -> FetchOutcome:
        browser = needs_browser(spec)
        slots = self.render_slots if browser else self.static_slots
        self.waiting += 1
        try:
            await slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            if browser:
                outcome, after = await self.renderer.render(
                    spec, started=started, deadline=deadline, max_bytes=max_bytes(spec)
                )
                if after is not None:
                    # The answer goes now; closing the page's context (and making the next spare) after.
                    task = asyncio.ensure_future(after)
                    self._cleanups.add(task)
                    task.add_done_callback(self._cleanups.discard)
                return outcome
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self.threads, lambda: fetch_static(spec, policy=self.policy, started=started, deadline=deadline)
            )
        finally:
            self.running -= 1
            self.served += 1
            slots.release()


async def handle_fetch(request: web.Request) -> web.Response:
    started = time.monotonic()
    fetcher: Fetcher = request.app["fetcher"]
    try:
        spec = FetchSpec.from_json(await request.json())
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
    error = spec_error(spec)
    if error:
        return web.json_response({"error": "bad_request", "message": error}, status=400)
    if fetcher.full(spec):
        return web.json_response(
            {"error": "service_unavailable", "message": "The fetcher is busy"}, status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    outcome = await fetcher.fetch(spec, started)
    return web.Response(text=json.dumps(outcome.to_json()), content_type="application/json")


async def handle_health(request: web.Request) -> web.Response:
    fetcher: Fetcher = request.app["fetcher"]
    renderer = fetcher.renderer
    return web.json_response({
        "status": "ok", "waiting": fetcher.waiting, "running": fetcher.running, "served": fetcher.served,
        # Work after answers: contexts of answered pages still closing, and spare contexts being made.
        "cleaning": len(fetcher._cleanups) + renderer.making,
        "queue": fetcher.queue, "browser_pid": renderer.pid, "browser_launches": renderer.launches,
        "contexts": renderer.contexts, "memory_stops": renderer.memory_stops,
    })


def make_app(**options: Any) -> web.Application:
    """The service, configured from settings (options override them: tests, benchmarks)."""
    policy = NetPolicy(allowed=settings.CRAWL_ALLOWED_NETWORKS)
    # The browser's relays judge by the active policy of this process, as in a crawl process.
    activate(policy)
    app = web.Application(client_max_size=1024 * 1024)
    config = {
        "concurrency": settings.FETCHER_CONCURRENCY,
        "render_concurrency": settings.FETCHER_RENDER_CONCURRENCY,
        "queue": settings.FETCHER_QUEUE,
        "page_memory_mb": settings.FETCHER_PAGE_MEMORY_MB,
        **options,
    }

    async def lifecycle(app: web.Application):
        app["fetcher"] = Fetcher(policy=policy, **config)
        await app["fetcher"].start()
        yield
        await app["fetcher"].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/fetch", handle_fetch)
    app.router.add_get("/health", handle_health)
    return app
