"""`manage.py registernode NAME URL [--slots N]`: add or update a Scrapyd node in the registry."""

from django.core.management.base import BaseCommand

from nodes.services import register_node


class Command(BaseCommand):
    help = "Register (or update) a Scrapyd node by name."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("url")
        parser.add_argument("--slots", type=int, default=8, help="Crawls the node runs at once (its max_proc)")

    def handle(self, *args, name: str, url: str, slots: int, **options):
        node = register_node(name=name, url=url.rstrip("/") + "/", slots=slots)
        self.stdout.write(f"Node {node.name} at {node.url} ({node.slots} slots)")
