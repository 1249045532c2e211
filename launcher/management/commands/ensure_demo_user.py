"""Create the demo superuser (demo/demo) — only with DEBUG on and only when no user exists."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo superuser demo/demo when DEBUG is on and the database has no user."

    def handle(self, *args, **options):
        User = get_user_model()
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo user is created.")
            return
        if User.objects.exists():
            self.stdout.write("Users exist already: no demo user is created.")
            return
        User.objects.create_superuser("demo", email="demo@example.com", password="demo")
        self.stdout.write(
            self.style.WARNING("Created the demo superuser: log in as demo / demo (DEBUG only).")
        )
