"""`manage.py createapikey USERNAME`: create the user if needed and print a new API key once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from core.keys import issue_key
from core.management.database import require_tables
from core.models import ApiKey


class Command(BaseCommand):
    help = "Create USERNAME if needed and print a new API key for it (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key")
        parser.add_argument("--staff", action="store_true", help="Make the user staff (node registry, admin)")

    def handle(self, *args, username: str, name: str, staff: bool, **options):
        require_tables(get_user_model(), ApiKey)
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
        if staff:
            user.is_staff = True
        if created or staff:
            user.save()
        _, raw = issue_key(user=user, name=name)
        if created:
            self.stderr.write(f"Created user {username}")
        self.stdout.write(raw)
