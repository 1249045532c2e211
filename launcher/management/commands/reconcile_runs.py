"""`python manage.py reconcile_runs` — one reconciler pass now, or `--schedule` the periodic one.

The worker runs the reconciler every 30 s once the chain is started; `--schedule` starts it
(idempotent: it does nothing when a pass is already waiting). `make run` calls it before
starting the worker; in production run it once after each deploy.
"""

import json
from datetime import timedelta

from django.core.management.base import BaseCommand

from launcher.services.reconcile import runs_reconcile
from launcher.tasks import reconcile_schedule


class Command(BaseCommand):
    help = (
        "Refresh unfinished runs not refreshed for a minute and settle launches whose outcome "
        "is unknown. With --schedule, start the worker's periodic reconciler instead."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--schedule",
            action="store_true",
            help="Enqueue the periodic reconciler task for the worker (unless one is waiting).",
        )

    def handle(self, *args, schedule: bool = False, **options):
        if schedule:
            if reconcile_schedule(delay=timedelta(0)):
                self.stdout.write("Scheduled the reconciler: the worker runs it every 30 s.")
            else:
                self.stdout.write("The reconciler is already scheduled.")
            return
        report = runs_reconcile()
        self.stdout.write(json.dumps(report.as_dict()))
