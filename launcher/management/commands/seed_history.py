"""python manage.py seed_history --runs N — fill the database with realistic finished runs.

For benchmarks (`make bench` runs it in its own database) and for trying the pages at scale on a
development database. See `launcher/services/history.py` for what a seeded run carries.
Running it again adds only what is missing up to N.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from launcher.cyberdesk import errors
from launcher.models import Workflow
from launcher.services.history import BIG_BATCH_RUNS, HistoryUnavailable, history_seed


class Command(BaseCommand):
    help = "Fill the database with N realistic finished runs (idempotent: adds what is missing)."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, required=True, help="How many seeded runs.")
        parser.add_argument(
            "--big-batch",
            type=int,
            default=BIG_BATCH_RUNS,
            help=f"Runs in the one big matrix batch (default {BIG_BATCH_RUNS}; at most half).",
        )
        parser.add_argument("--seed", type=int, default=1, help="Random seed (default 1).")

    def handle(self, *args, runs: int, big_batch: int, seed: int, **options):
        if runs < 0:
            raise CommandError("--runs must be 0 or more.")
        if not Workflow.objects.exists():
            self._sync_workflows()
        started = time.monotonic()
        try:
            report = history_seed(
                runs=runs,
                big_batch_runs=max(0, big_batch),
                seed=seed,
                say=lambda message: self.stderr.write(f"  … {message}"),
            )
        except HistoryUnavailable as exc:
            raise CommandError(str(exc)) from exc
        seconds = time.monotonic() - started
        if not report.added:
            self.stdout.write(f"The history already holds {report.existing} seeded runs.")
            return
        big = f" (the big batch is #{report.big_batch_id})" if report.big_batch_id else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Added {report.added} finished runs in {report.batches} new batches{big} in "
                f"{seconds:.1f} s; {report.existing + report.added} seeded runs in all."
            )
        )

    def _sync_workflows(self) -> None:
        """An empty mirror: try the API once (the sandbox, locally) before giving up."""
        from launcher.services.catalog import models_sync
        from launcher.services.workflows import workflows_sync

        try:
            workflows_sync()
            models_sync()
        except errors.CyberdeskError as exc:
            self.stderr.write(f"The workflow mirror is empty and the API did not answer: {exc}")
