"""Background tasks (django-tasks, database backend; `manage.py db_worker` runs them).

Tasks are thin: they load rows and call a service. Keep each area's tasks grouped.
"""

import logging
from datetime import timedelta

from django.utils import timezone
from django_tasks import task
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from launcher.models import Run
from launcher.services import run_sync
from launcher.services.reconcile import runs_reconcile

logger = logging.getLogger(__name__)

# --- Run state: the reconciler and the follow-ups of a status change -----------------------------

RECONCILE_EVERY = timedelta(seconds=30)


@task()
def reconcile_runs_task() -> dict:
    """One reconciler pass, then the next one scheduled: a chain that keeps itself alive.

    The chain is started by `python manage.py reconcile_runs --schedule` (`make run` does it
    before starting the worker; in production run it once after each deploy — it is safe to
    repeat). If two chains ever exist (two `--schedule` at once), they merge: a pass schedules
    the next one only when none is waiting.
    """
    try:
        return runs_reconcile().as_dict()
    finally:
        reconcile_schedule()


def reconcile_schedule(*, delay: timedelta = RECONCILE_EVERY) -> bool:
    """Enqueue the next reconciler pass unless one is already waiting; return whether it did."""
    if not reconcile_runs_task.get_backend().supports_defer:
        # A backend that runs tasks immediately would recurse forever.
        logger.warning("The task backend cannot run tasks later: the reconciler is not scheduled")
        return False
    waiting = DBTaskResult.objects.filter(
        task_path=reconcile_runs_task.module_path, status=TaskResultStatus.READY
    ).exists()
    if waiting:
        return False
    reconcile_runs_task.using(run_after=timezone.now() + delay).enqueue()
    return True


@task()
def run_finalize_task(run_id: int) -> None:
    """A run just finished: fetch what its status news left out (message history, cost)."""
    run = Run.objects.filter(pk=run_id).first()
    if run is not None:
        run_sync.run_finalize(run)


@task()
def run_refresh_task(run_id: int) -> None:
    """Ask the API for a run's current state now (e.g. a webhook we could not trust)."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return
    run = run_sync.run_refresh(run, force=True)
    if run.is_finished:
        run_sync.run_finalize(run)
