"""Background tasks (django-tasks, database backend; `manage.py db_worker` runs them).

Tasks are thin: they load rows and call a service. Keep each area's tasks grouped.
"""

import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from django_tasks import task
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from launcher.models import Batch, Run, Submission
from launcher.services import batches, run_sync
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
        try:
            batches_resume_stalled()
        finally:
            try:
                batch_actions_resume_stalled()
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


# --- Batches: sending a batch's planned runs ----------------------------------------------------

# A sending task works in slices of `batches.SLICE_SECONDS` (plus the sends in flight); one that
# has been "running" far longer than that belongs to a worker that was killed.
BATCH_STALLED_AFTER = timedelta(minutes=3)


@task()
def batch_submit_task(batch_id: int) -> dict:
    """Send one slice of a batch's queued runs; if some remain, enqueue the next slice (later,
    when throttled). Killing the worker at any point is safe: the runs and their keys are
    stored, and `batches_resume_stalled` starts a new task for a batch left half-sent."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return {}
    report = batches.batch_submit(batch=batch, time_budget=batches.SLICE_SECONDS)
    if report.remaining and not report.fatal:
        run_after = timezone.now() + timedelta(seconds=report.resume_in)
        batch_submit_task.using(run_after=run_after).enqueue(batch_id)
    return report.as_dict()


def batches_resume_stalled() -> int:
    """Start a sending task for every batch with queued runs and no live task (its worker was
    killed, or the enqueue after planning was lost); return how many were started. Called by
    each reconciler pass."""
    waiting = set(
        Batch.objects.filter(
            state=Batch.State.SUBMITTING, runs__submission=Submission.QUEUED
        ).values_list("pk", flat=True)
    )
    if not waiting:
        return 0
    live = DBTaskResult.objects.filter(task_path=batch_submit_task.module_path).filter(
        Q(status=TaskResultStatus.READY)
        | Q(status=TaskResultStatus.RUNNING, started_at__gte=timezone.now() - BATCH_STALLED_AFTER)
    )
    for args_kwargs in live.values_list("args_kwargs", flat=True):
        waiting.discard((args_kwargs.get("args") or [None])[0])
    for batch_id in sorted(waiting):
        logger.warning("Batch %s: no task is sending it; starting one", batch_id)
        batch_submit_task.enqueue(batch_id)
    return len(waiting)


# --- Batches: cancelling the rest, retrying the failed ------------------------------------------

# The request records what was asked (`Batch.cancel_requested_at` / `retry_requested_at`) and
# enqueues one of these; each works in slices like the sender and clears the mark when done.
ACTION_RESUME_GRACE = timedelta(minutes=1)  # the request's own enqueue happens on commit


def _user(user_id: int | None):
    return get_user_model().objects.filter(pk=user_id).first() if user_id else None


@task()
def batch_cancel_task(batch_id: int, user_id: int | None = None) -> dict:
    """Cancel upstream, one slice at a time, the batch's runs that are still active."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return {}
    report = batches.batch_cancel_upstream(
        batch=batch, user=_user(user_id), time_budget=batches.SLICE_SECONDS
    )
    if report.remaining:
        run_after = timezone.now() + timedelta(seconds=report.resume_in)
        batch_cancel_task.using(run_after=run_after).enqueue(batch_id, user_id)
    return report.as_dict()


@task()
def batch_retry_task(
    batch_id: int, targets: list, requested_at: str | None = None, user_id: int | None = None
) -> dict:
    """Retry, one slice at a time, the batch's runs still failed at the attempt the request
    saw (`targets`: [run id, attempt] pairs)."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return {}
    report = batches.batch_retry_upstream(
        batch=batch,
        targets=targets,
        requested_at=requested_at,
        user=_user(user_id),
        time_budget=batches.SLICE_SECONDS,
    )
    if report.remaining:
        run_after = timezone.now() + timedelta(seconds=report.resume_in)
        batch_retry_task.using(run_after=run_after).enqueue(
            batch_id, targets, requested_at, user_id
        )
    return report.as_dict()


def batch_actions_resume_stalled() -> int:
    """Start again the cancel or retry of every batch whose mark is still set and that no live
    task works on (its worker was killed); return how many were started. A resumed retry gets
    the arguments of the batch's latest retry task, so it retries the same runs at the same
    attempts — none twice. Called by each reconciler pass."""
    now = timezone.now()
    started = 0
    for mark, job in (
        ("cancel_requested_at", batch_cancel_task),
        ("retry_requested_at", batch_retry_task),
    ):
        waiting = set(
            Batch.objects.filter(**{f"{mark}__lte": now - ACTION_RESUME_GRACE}).values_list(
                "pk", flat=True
            )
        )
        if not waiting:
            continue
        live = DBTaskResult.objects.filter(task_path=job.module_path).filter(
            Q(status=TaskResultStatus.READY)
            | Q(status=TaskResultStatus.RUNNING, started_at__gte=now - BATCH_STALLED_AFTER)
        )
        for args_kwargs in live.values_list("args_kwargs", flat=True):
            waiting.discard((args_kwargs.get("args") or [None])[0])
        for batch_id in sorted(waiting):
            last = (
                DBTaskResult.objects.filter(
                    task_path=job.module_path, args_kwargs__args__0=batch_id
                )
                .order_by("-enqueued_at")
                .values_list("args_kwargs", flat=True)
                .first()
            )
            args = (last or {}).get("args") or [batch_id]
            if job is batch_retry_task and len(args) < 2:
                # The runs to retry are only known from a task's arguments: nothing to resume.
                Batch.objects.filter(pk=batch_id).update(retry_requested_at=None)
                continue
            logger.warning("Batch %s: no task is doing its %s; starting one", batch_id, mark)
            job.enqueue(*args)
            started += 1
    return started
