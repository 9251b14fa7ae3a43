"""Real git repositories holding Scrapy projects, for deploy tests."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

SCRAPY_CFG = """\
[settings]
default = shop.settings

[deploy]
project = shop
"""

SETTINGS = """\
BOT_NAME = "shop"
SPIDER_MODULES = ["shop.spiders"]
NEWSPIDER_MODULE = "shop.spiders"
ROBOTSTXT_OBEY = False
"""


def spider_module(name: str, page: str) -> str:
    """A spider that takes the fixture site's address as its `base_url` argument."""
    class_name = name.capitalize() + "Spider"
    return textwrap.dedent(f'''\
        import scrapy


        class {class_name}(scrapy.Spider):
            name = "{name}"

            def __init__(self, base_url="http://127.0.0.1/", **kwargs):
                super().__init__(**kwargs)
                self.base_url = base_url

            async def start(self):
                yield scrapy.Request(self.base_url + "{page}")

            def parse(self, response):
                yield {{"url": response.url, "title": response.css("h1::text").get()}}
        ''')


def start_requests_spider_module(name: str, pages: list[str]) -> str:
    """A spider written for Scrapy before 2.13: `start_requests()` only, no `start()`.

    Its `start_urls` points where nothing listens: before 2.13 an overridden start_requests() meant
    they were never fetched, and the platform must keep that meaning.
    """
    class_name = name.capitalize() + "Spider"
    return textwrap.dedent(f'''\
        import scrapy


        class {class_name}(scrapy.Spider):
            name = "{name}"
            start_urls = ["http://127.0.0.1:9/never-fetched"]

            def __init__(self, base_url="http://127.0.0.1/", **kwargs):
                super().__init__(**kwargs)
                self.base_url = base_url

            def start_requests(self):
                for page in {pages!r}:
                    yield scrapy.Request(self.base_url + page, callback=self.parse_page)

            def parse_page(self, response):
                yield {{"url": response.url, "title": response.css("h1::text").get()}}
        ''')


def start_requests_files() -> dict[str, str]:
    """A Scrapy project whose only spider defines start_requests() and not start()."""
    files = {k: v for k, v in base_files().items() if not k.startswith("shop/spiders/")}
    files["shop/spiders/__init__.py"] = ""
    files["shop/spiders/legacy.py"] = start_requests_spider_module("legacy", ["product1.html", "product2.html"])
    return files


def base_files() -> dict[str, str]:
    """A Scrapy project with two spiders, plus files a deploy must leave out of the egg."""
    return {
        "scrapy.cfg": SCRAPY_CFG,
        "README.md": "# shop\n",
        "tests/test_shop.py": "def test_nothing():\n    pass\n",
        "shop/__init__.py": "",
        "shop/settings.py": SETTINGS,
        "shop/spiders/__init__.py": "",
        "shop/spiders/products.py": spider_module("products", "product1.html"),
        "shop/spiders/index.py": spider_module("index", "index.html"),
    }


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    """Write (or, for None, delete) files and commit them; returns the commit SHA."""
    for rel, content in files.items():
        path = repo / rel
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_repo(path: Path, files: dict[str, str] | None = None) -> tuple[Path, str]:
    """A git repository on branch main with one commit of `files` (default: the two-spider project)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    return path, commit(path, base_files() if files is None else files, "first")
