"""The console's browser tests: headless Chromium (Debian's, through Playwright) against the platform.

The platform is the integration suite's (`platform`: the live server in this process, a real Celery
worker, real Scrapyd nodes where a test asks for them). `console` signs an operator in and gives a
`ConsoleBrowser`; every page it visits is screenshotted into CONSOLE_SCREENSHOTS (a folder, for people
to look at; default: the test's tmp folder) and the test fails on any answer ≥ 500, any JavaScript
error in the console, or any page whose server time passes its budget (CONSOLE_PAGE_BUDGET_MS).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM_PATHS = ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium")
PAGE_BUDGET_MS = float(os.environ.get("CONSOLE_PAGE_BUDGET_MS", "1500"))
PASSWORD = "console-pass-1"  # noqa: S105 - a test account's


def _chromium() -> str:
    return next((path for path in CHROMIUM_PATHS if Path(path).exists()), CHROMIUM_PATHS[-1])


# Module-scoped: while Playwright's sync API is started, its event loop counts as running in this thread,
# and every later test that calls asyncio.run() (the unit tests of the crawl's guards) would fail.
@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls a test makes between two
    # browser steps are still synchronous, so Django's guard against async contexts does not apply
    # (Django reads the variable at each call: it is set only while this module's browser runs).
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
            yield browser
            browser.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("console-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class ConsoleBrowser:
    """One signed-in operator's browser tab, with the checks every visited page must pass."""

    def __init__(self, page, base_url: str, shots: Path, test_name: str) -> None:
        self.page = page
        self.base_url = base_url
        self.shots = shots
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)[:80]
        self.count = 0
        self.problems: list[str] = []
        self.timings: list[tuple[str, float]] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        page.on("response", self._on_response)

    def _on_console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console error on {self.page.url}: {message.text}")

    def _on_response(self, response) -> None:
        if response.status >= 500:
            self.problems.append(f"{response.status} from {response.request.method} {response.url}")

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def goto(self, path: str, *, budget_ms: float | None = None):
        """Opens a page, checks its answer and server time, saves its screenshot; returns the response."""
        response = self.page.goto(self.url(path), wait_until="load")
        assert response is not None and response.status < 400, f"{path}: HTTP {response and response.status}"
        self.settled(budget_ms=budget_ms)
        return response

    def settled(self, *, budget_ms: float | None = None) -> float:
        """After a navigation (goto, a click that loads a page): time budget and screenshot."""
        self.page.wait_for_load_state("load")
        server_ms = self.page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return n ? n.responseStart - n.requestStart : 0; }"
        )
        budget = budget_ms if budget_ms is not None else PAGE_BUDGET_MS
        self.timings.append((self.page.url, server_ms))
        assert server_ms <= budget, f"{self.page.url} took {server_ms:.0f} ms (budget {budget:.0f} ms)"
        self.screenshot(urlsplit(self.page.url).path.strip("/").replace("/", "_") or "root")
        return server_ms

    def screenshot(self, label: str = "") -> Path:
        self.count += 1
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:80]
        path = self.shots / f"{self.name}-{self.count:02d}{'-' + label if label else ''}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def operator(django_user_model):
    """A superuser, the console's usual operator."""
    return django_user_model.objects.create_superuser("operator", "operator@example.com", PASSWORD)


@pytest.fixture
def console(request, chromium, platform, operator, screenshots_dir):
    """A signed-in operator's browser on the running platform; fails the test on any page problem."""
    context = chromium.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    browser = ConsoleBrowser(page, platform.url, screenshots_dir, request.node.name)
    browser.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", operator.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    browser.settled()
    assert "/admin/login/" not in page.url, "sign-in failed"
    yield browser
    try:
        browser.check()
    finally:
        context.close()
