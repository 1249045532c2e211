"""python manage.py prompt_rollups_rebuild — recount the kept run counters: the prompts page's
per-version numbers and the batch pages' per-cell numbers and run counts.

The counters (`PromptVersionRollup`, `BatchCellRollup`, `Batch.run_count`) and the duration
buckets behind the medians (`PromptVersionDurationBucket`) move with the runs; this recomputes
them all from the runs (`services/rollups.rollups_rebuild`, one locked transaction), for after
a bulk insert that skipped the hooks, or for anyone who doubts them.
"""

from django.core.management.base import BaseCommand

from launcher.services.rollups import rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the kept run counters (prompt versions and their duration buckets, "
        "batch cells) from the runs."
    )

    def handle(self, *args, **options):
        for name, rows in rollups_rebuild().items():
            self.stdout.write(self.style.SUCCESS(f"Recounted {rows} {name} with runs."))
