"""Background tasks (django-tasks, database backend; `manage.py db_worker` runs them).

Tasks are thin: they load rows and call a service. Keep each area's tasks grouped.
"""

import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_tasks import task
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from launcher.models import Batch, BatchChunk, Run, Submission
from launcher.services import batches, healing, run_sync
from launcher.services.reconcile import runs_reconcile

logger = logging.getLogger(__name__)

# --- Run state: the reconciler and the follow-ups of a status change -----------------------------

RECONCILE_EVERY = timedelta(seconds=30)


@task()
def reconcile_runs_task() -> dict:
    """One reconciler pass, with the next one scheduled *first*: a chain that keeps itself
    alive, even when the worker is killed (`kill -9` runs no `finally`) in the middle of a pass
    — the next pass is already waiting, 30 s after this one started.

    The chain is started by `python manage.py reconcile_runs --schedule` (`make run` does it
    before starting the worker; in production run it before each `db_worker` start — it is safe
    to repeat). A spare pass always waits 30 s beyond the next one (`reconcile_schedule`), so a
    worker killed between claiming a pass and scheduling the next cannot end the chain either.
    If two chains ever exist (two `--schedule` at once), they merge: a pass adds a pass only
    where none is waiting. Two passes overlapping (a slow pass on
    one worker, the next on another) is safe: every run is claimed by compare-and-set.

    Each pass also heals what a killed worker left: batches with free work and no sender
    waiting get one, cancels / retries left half-done are started again, task rows left
    RUNNING by a dead worker are marked failed.
    """
    reconcile_schedule()
    healed = {}
    for name, step in (
        ("batches_resumed", batches_resume_stalled),
        ("batch_actions_resumed", batch_actions_resume_stalled),
        ("tasks_abandoned", healing.task_results_abandoned_fail),
    ):
        try:
            healed[name] = step()
        except Exception:  # one failing step must not stop the others or the reconciler
            logger.exception("Reconciler pass: %s failed", name)
    return runs_reconcile().as_dict() | healed


def reconcile_schedule(*, delay: timedelta = RECONCILE_EVERY) -> bool:
    """Make sure a reconciler pass waits to run within `delay`, and a spare one
    `RECONCILE_EVERY` after it; return whether anything was enqueued.

    The spare is for the instant between a worker claiming a pass and that pass scheduling
    the next one: a `kill -9` there would otherwise end the chain. Each pass calls this at its
    start, so the spare becomes the next pass and a new spare is added — one enqueue a pass.
    """
    if not reconcile_runs_task.get_backend().supports_defer:
        # A backend that runs tasks immediately would recurse forever.
        logger.warning("The task backend cannot run tasks later: the reconciler is not scheduled")
        return False
    now = timezone.now()
    next_by = now + delay
    waiting = list(
        DBTaskResult.objects.filter(
            task_path=reconcile_runs_task.module_path, status=TaskResultStatus.READY
        ).values_list("run_after", flat=True)
    )
    enqueued = False
    if not any(run_after <= next_by for run_after in waiting):
        reconcile_runs_task.using(run_after=next_by).enqueue()
        enqueued = True
    if not any(run_after > next_by for run_after in waiting):
        reconcile_runs_task.using(run_after=next_by + RECONCILE_EVERY).enqueue()
        enqueued = True
    return enqueued


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

# Cancel / retry tasks (below) have no lease of their own: one RUNNING for longer than this
# belongs to a worker that was killed.
BATCH_STALLED_AFTER = timedelta(minutes=3)
# A sender enqueues its stand-in this far ahead before it sends anything: if its worker dies
# (its chunk's lease runs out after `CHUNK_LEASE`), the stand-in takes the batch over.
SENDER_STAND_IN_AFTER = timedelta(seconds=20)


@task()
def batch_submit_task(batch_id: int) -> dict:
    """Send chunks of a batch for one slice (`batches.SLICE_SECONDS`); if runs remain, enqueue
    the next slice (later, when throttled). Several of these run at once on different workers
    (`BATCH_SENDERS` are enqueued per batch), each claiming its own chunks.

    Killing the worker at any point is safe: the runs and their keys are stored, the dead
    sender's chunk lease runs out, and the stand-in this task enqueued before sending takes
    the batch over; `batches_resume_stalled` is the backstop."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return {}
    can_defer = batch_submit_task.get_backend().supports_defer  # not the immediate backend
    if (
        can_defer
        and batch.state == Batch.State.SUBMITTING
        and not healing.tasks_waiting(batch_submit_task, first_args=[batch_id])
    ):
        batch_submit_task.using(run_after=timezone.now() + SENDER_STAND_IN_AFTER).enqueue(batch_id)
    report = batches.batch_submit(batch=batch, time_budget=batches.SLICE_SECONDS)
    if report.remaining and not report.fatal:
        if not report.resume_in:
            batch_submit_task.enqueue(batch_id)  # the next slice, at once
        elif can_defer:
            # Nothing can be sent before then (a long Retry-After, or every chunk held by
            # another sender): one task then replaces those waiting, stand-ins included.
            healing.task_waiting_cancel(batch_submit_task, first_arg=batch_id)
            run_after = timezone.now() + timedelta(seconds=report.resume_in)
            batch_submit_task.using(run_after=run_after).enqueue(batch_id)
    elif not report.remaining:
        healing.task_waiting_cancel(batch_submit_task, first_arg=batch_id)  # stand-ins
    return report.as_dict()


def batches_resume_stalled() -> int:
    """Start a sending task for every batch with work nobody holds (an open chunk whose lease
    is free, or queued runs not cut into chunks yet) and no sending task waiting — the enqueue
    after planning was lost, or every task of the batch died with its worker; return how many
    were started. Called by each reconciler pass."""
    now = timezone.now()
    submitting = Batch.objects.filter(state=Batch.State.SUBMITTING)
    free_chunk = BatchChunk.objects.filter(batch=OuterRef("pk"), done_at__isnull=True).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=now)
    )
    queued = Run.objects.filter(batch=OuterRef("pk"), submission=Submission.QUEUED)
    stalled = set(
        submitting.filter(
            Exists(queued)
            & (Exists(free_chunk) | ~Exists(BatchChunk.objects.filter(batch=OuterRef("pk"))))
        ).values_list("pk", flat=True)
    )
    stalled -= healing.tasks_waiting(batch_submit_task, first_args=stalled)
    for batch_id in sorted(stalled):
        logger.warning("Batch %s: no task is sending it; starting one", batch_id)
        batch_submit_task.enqueue(batch_id)
    return len(stalled)


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
