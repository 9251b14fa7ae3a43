"""`manage.py registernode NAME URL [--slots N] [--username USER]`: add or update a Scrapyd node in the registry.

With --username, the node's basic-auth password is read from the environment variable SCRAPYD_PASSWORD
(the one Scrapyd itself reads) or, at a terminal, asked for: never from the command line, where `ps`
and the shell's history would keep it.
"""

import getpass
import os
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from nodes.services import register_node, request_sync

PASSWORD_VARIABLE = "SCRAPYD_PASSWORD"


class Command(BaseCommand):
    help = "Register (or update) a Scrapyd node by name."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("url")
        parser.add_argument("--slots", type=int, default=8, help="Crawls the node runs at once (its max_proc)")
        parser.add_argument(
            "--username",
            help=f"Scrapyd's basic-auth user; its password comes from ${PASSWORD_VARIABLE} or a prompt",
        )

    def handle(self, *args, name: str, url: str, slots: int, username: str | None, **options):
        if slots < 0:  # the column's CHECK would refuse it with a traceback
            raise CommandError("--slots is the crawls the node runs at once: 0 or more")
        password = None
        if username is not None:
            password = os.environ.get(PASSWORD_VARIABLE)
            if password is None:
                if not sys.stdin.isatty():
                    raise CommandError(f"--username needs the password in ${PASSWORD_VARIABLE} (or run at a terminal)")
                password = getpass.getpass(f"Scrapyd password of {username}: ")
        try:
            node = register_node(name=name, url=url.rstrip("/") + "/", slots=slots, username=username,
                                 password=password)
        except ValidationError as exc:
            raise CommandError(f"--username: {' '.join(exc.messages)}") from None
        request_sync(node)  # a worker gives it every current version (the dispatch checks the run's own too)
        auth = f", user {node.username}, password {'set' if node.has_password else 'not set'}" if node.username else ""
        self.stdout.write(f"Node {node.name} at {node.url} ({node.slots} slots{auth})")
