"""`manage.py runfetcher`: the warm fetcher service of the synchronous API (fetchers.service)."""

from __future__ import annotations

from aiohttp import web
from django.conf import settings
from django.core.management.base import BaseCommand

from fetchers.service import make_app


class Command(BaseCommand):
    help = "Serve the fetchers of the synchronous API (static fetches and one warm Chromium)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.FETCHER_PORT)

    def handle(self, *args, **opts):
        self.stdout.write(f"Fetcher starting on http://{opts['host']}:{opts['port']}/")
        web.run_app(make_app(), host=opts["host"], port=opts["port"], print=lambda text: self.stdout.write(text),
                    access_log=None, handle_signals=True)
