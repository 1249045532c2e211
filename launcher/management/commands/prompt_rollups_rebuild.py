"""python manage.py prompt_rollups_rebuild — recount the prompts page's per-version numbers.

The counters (`PromptVersionRollup`) and the duration buckets behind the medians
(`PromptVersionDurationBucket`) move with the runs; this recomputes them all from the runs, for
after a bulk insert that skipped the hooks, or for anyone who doubts them.
"""

from django.core.management.base import BaseCommand

from launcher.services.prompt_rollups import prompt_rollups_rebuild


class Command(BaseCommand):
    help = "Recompute every prompt version's run counters and duration buckets from the runs."

    def handle(self, *args, **options):
        versions = prompt_rollups_rebuild()
        self.stdout.write(self.style.SUCCESS(f"Recounted {versions} prompt versions with runs."))
