"""`manage.py sandbox_tick`: one pass of the sandbox driver, without the worker."""

from django.core.management.base import BaseCommand

from launcher.sandbox.tasks import sandbox_tick


class Command(BaseCommand):
    help = "Advance due sandbox runs and send due webhooks once."

    def handle(self, *args, **options):
        next_wake = sandbox_tick()
        if next_wake is None:
            self.stdout.write("Sandbox tick done; nothing pending.")
        else:
            self.stdout.write(f"Sandbox tick done; next due at {next_wake.isoformat()}.")
