"""python manage.py prompt_rollups_rebuild — recount the kept run counters: the prompts page's
per-version numbers and the batch pages' per-cell numbers and run counts.

The counters (`PromptVersionRollup`, `BatchCellRollup`, `Batch.run_count`) and the duration
buckets behind the medians (`PromptVersionDurationBucket`) move with the runs; this recomputes
them all from the runs, for after a bulk insert that skipped the hooks, or for anyone who
doubts them.
"""

from django.core.management.base import BaseCommand

from launcher.services.batch_cell_rollups import batch_cell_rollups_rebuild
from launcher.services.prompt_rollups import prompt_rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the kept run counters (prompt versions and their duration buckets, "
        "batch cells) from the runs."
    )

    def handle(self, *args, **options):
        versions = prompt_rollups_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Recounted {versions} prompt versions with runs."))
        cells = batch_cell_rollups_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Recounted {cells} batch cells with runs."))
