"""python manage.py sync_workflows — refresh the local mirror of the API's workflows."""

from django.core.management.base import BaseCommand, CommandError

from launcher.cyberdesk import errors
from launcher.services.workflows import workflows_sync


class Command(BaseCommand):
    help = "Sync the local workflow mirror from the Cyberdesk API."

    def handle(self, *args, **options):
        try:
            workflows = workflows_sync()
        except errors.CyberdeskError as exc:
            raise CommandError(f"Could not sync the workflows: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"{len(workflows)} workflows synced."))
