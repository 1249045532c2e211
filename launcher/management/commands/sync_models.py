"""python manage.py sync_models — fetch the API's model configurations into the catalog."""

from django.core.management.base import BaseCommand, CommandError

from launcher.cyberdesk import errors
from launcher.services.catalog import models_sync


class Command(BaseCommand):
    help = "Sync the model catalog from the Cyberdesk API (new computer-use models arrive enabled)."

    def handle(self, *args, **options):
        try:
            result = models_sync()
        except errors.CyberdeskError as exc:
            raise CommandError(f"Could not sync the models: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Models synced: {result}."))
