"""Acting on a batch: "Cancel the rest" and "Retry failed runs".

Each takes one API call per run: for a big batch, minutes. So the request does only the local,
instant part (in one transaction) and the worker does the calls (`launcher.tasks.
batch_cancel_task` / `batch_retry_task`), `BATCH_CONCURRENCY` at a time, in slices like the
sender. Each pass is safe to run twice: a run already cancelled or retried is skipped. While the
worker has work left, `Batch.cancel_requested_at` / `retry_requested_at` is set and the batch
page keeps polling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from launcher.cyberdesk import errors
from launcher.models import TERMINAL_STATUSES, Batch, Run, RunEvent, RunStatus, Submission
from launcher.services.batches.workers import (
    RATE_LIMIT_DEFAULT_WAIT,
    RATE_LIMIT_MAX_WAIT,
    UNREACHABLE_MAX_WAIT,
    Senders,
    database_turn,
    run_workers,
)
from launcher.services.run_events import run_events_record_changed
from launcher.services.runs import RunActionFailed, run_cancel, run_retry

logger = logging.getLogger(__name__)

CANCELLED_BEFORE_SENDING = "Cancelled before it was sent; nothing ran."
FAILED_STATUSES = (RunStatus.TASK_FAILED, RunStatus.ERROR)
ACTION_FAILURES_KEPT = 20  # failure messages a report keeps (the rest are only logged)


@dataclass(frozen=True)
class BatchActionRequested:
    """What a click did at once, and what it left to the worker."""

    done_now: int = 0  # runs never sent, cancelled here (nothing ever runs for them)
    in_background: int = 0  # runs the worker will cancel / retry upstream


@dataclass
class BatchActionReport:
    """One worker pass over a batch's cancel or retry."""

    done: int = 0  # cancelled / retried upstream by this pass
    skipped: int = 0  # nothing to do any more (finished, already retried, no longer failed)
    failed: int = 0  # the API refused it; the run is left as it is
    deferred: int = 0  # throttled or unreachable: put back, tried again later
    remaining: int = 0  # runs left for the next pass
    resume_in: float = 0.0  # seconds the next pass should wait (a long Retry-After)
    fatal: str = ""  # a refusal that holds for every run (bad API key)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _active_upstream(batch: Batch):
    """The batch's runs the API has and that have not finished."""
    return Run.objects.filter(batch=batch, cyberdesk_id__isnull=False).exclude(
        status__in=TERMINAL_STATUSES
    )


def batch_cancel_rest(*, batch: Batch, user) -> BatchActionRequested:
    """Stop a batch. At once, in one transaction: the batch is `cancelled` (its sender sends
    nothing more) and its runs not sent yet are cancelled here — nothing ever runs for them. The
    runs the API has and that are still active are left to `batch_cancel_task`, enqueued when
    this commits (unless one is already on its way).

    A run on its way right now is caught by its sender, which cancels it upstream on arrival.
    """
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        queued = list(
            Run.objects.filter(batch=batch, submission=Submission.QUEUED).values_list(
                "pk", flat=True
            )
        )
        done_now = Run.objects.filter(batch=batch, submission=Submission.QUEUED).update(
            submission=Submission.REJECTED,
            status=RunStatus.CANCELLED,
            submission_error=CANCELLED_BEFORE_SENDING,
        )
        # History: who cancelled the runs that were never sent (one its sender took meanwhile
        # is not cancelled by this update and gets no entry here).
        run_events_record_changed(
            candidate_ids=queued,
            changed={"status": RunStatus.CANCELLED, "submission_error": CANCELLED_BEFORE_SENDING},
            kind=RunEvent.Kind.CANCEL_REQUESTED,
            source=RunEvent.Source.USER,
            actor=user,
            detail={"before_sending": True, "batch": batch.pk},
        )
        active = _active_upstream(batch).count()
        already_asked = locked.cancel_requested_at is not None
        requested_at = (locked.cancel_requested_at or timezone.now()) if active else None
        Batch.objects.filter(pk=batch.pk).update(
            state=Batch.State.CANCELLED, cancel_requested_at=requested_at
        )
        if active and not already_asked:
            user_id = getattr(user, "pk", None)
            transaction.on_commit(lambda: _enqueue_action("batch_cancel_task", batch.pk, user_id))
    batch.state = Batch.State.CANCELLED
    batch.cancel_requested_at = requested_at
    logger.info(
        "Batch %s cancelled by %s: %d never sent, %d to cancel upstream",
        batch.pk,
        getattr(user, "pk", None),
        done_now,
        active,
    )
    return BatchActionRequested(done_now=done_now, in_background=active)


def batch_retry_failed(
    *, batch: Batch, user, failure_key: str | None = None
) -> BatchActionRequested:
    """Ask for every failed or errored run of the batch to be retried (in place, `run_retry`);
    with `failure_key`, only the runs of that failure cluster (`clusters.py`).

    The request only records it: `retry_requested_at`, and a `batch_retry_task` (enqueued on
    commit) carrying each run with the attempt it failed in — the worker retries a run only
    while it is still at that attempt, so a run is retried once however often the task runs.
    """
    with transaction.atomic():
        Batch.objects.select_for_update().filter(pk=batch.pk).first()  # one request at a time
        failed = Run.objects.filter(
            batch=batch, status__in=FAILED_STATUSES, cyberdesk_id__isnull=False
        )
        if failure_key is not None:
            failed = failed.filter(failure_key=failure_key)
        targets = [
            [pk, attempt]
            for pk, attempt in failed.order_by("batch_row", "pk").values_list("pk", "attempt")
        ]
        if not targets:
            return BatchActionRequested()
        requested_at = timezone.now()
        Batch.objects.filter(pk=batch.pk).update(retry_requested_at=requested_at)
        user_id = getattr(user, "pk", None)
        transaction.on_commit(
            lambda: _enqueue_action(
                "batch_retry_task", batch.pk, targets, requested_at.isoformat(), user_id
            )
        )
    batch.retry_requested_at = requested_at
    logger.info(
        "Batch %s: retry of %d failed runs asked by %s",
        batch.pk,
        len(targets),
        getattr(user, "pk", None),
    )
    return BatchActionRequested(in_background=len(targets))


def _enqueue_action(task_name: str, *args) -> None:
    from launcher import tasks  # tasks import services, not the reverse

    getattr(tasks, task_name).enqueue(*args)


def batch_cancel_upstream(
    *,
    batch: Batch,
    user=None,
    concurrency: int | None = None,
    time_budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchActionReport:
    """The worker's part of "Cancel the rest": cancel (`run_cancel`) each run of the batch the
    API has and that is still active, `concurrency` at a time. A 429 pauses every worker
    thread for its Retry-After (a long one ends the pass: `remaining`, `resume_in`); an
    unreachable API puts the run back with a growing pause. When nothing is left to try,
    `cancel_requested_at` is cleared."""
    ids = list(_active_upstream(batch).order_by("batch_row", "pk").values_list("pk", flat=True))
    report = _act_on_runs(
        batch,
        ids,
        lambda senders, run_id: _cancel_one(senders, run_id, batch=batch, user=user),
        concurrency=concurrency,
        time_budget=time_budget,
        sleep=sleep,
        clock=clock,
    )
    if report.remaining == 0:
        Batch.objects.filter(pk=batch.pk).update(cancel_requested_at=None)
    logger.info("Batch %s cancel: %s", batch.pk, report.as_dict())
    return report


def batch_retry_upstream(
    *,
    batch: Batch,
    targets: Iterable[Sequence[int]],
    requested_at: str | None = None,
    user=None,
    concurrency: int | None = None,
    time_budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchActionReport:
    """The worker's part of "Retry failed runs": `targets` are `[run id, attempt]` pairs as
    the request saw them; each run of this batch still failed *at that attempt* is retried
    (`run_retry`, whose compare-and-set on `attempt` makes two workers retry it once). Throttling
    and an unreachable API are handled as for cancelling. When nothing is left to try,
    `retry_requested_at` is cleared (if no later request replaced it)."""
    attempts = {int(pk): int(attempt) for pk, attempt in targets}
    ids = [
        pk
        for pk, attempt in _still_failed(batch, attempts).values_list("pk", "attempt")
        if attempts[pk] == attempt
    ]
    report = _act_on_runs(
        batch,
        ids,
        lambda senders, run_id: _retry_one(
            senders, run_id, attempt=attempts[run_id], batch=batch, user=user
        ),
        concurrency=concurrency,
        time_budget=time_budget,
        sleep=sleep,
        clock=clock,
    )
    if report.remaining == 0:
        done = Batch.objects.filter(pk=batch.pk)
        if requested_at:
            done = done.filter(retry_requested_at__lte=requested_at)
        done.update(retry_requested_at=None)
    logger.info("Batch %s retry: %s", batch.pk, report.as_dict())
    return report


def _still_failed(batch: Batch, attempts: Mapping[int, int]):
    return Run.objects.filter(
        batch=batch, pk__in=list(attempts), status__in=FAILED_STATUSES, cyberdesk_id__isnull=False
    )


def _act_on_runs(batch, ids, act, *, concurrency, time_budget, sleep, clock) -> BatchActionReport:
    concurrency = max(1, concurrency or settings.BATCH_CONCURRENCY)
    deadline = clock() + time_budget if time_budget is not None else None
    senders = Senders(ids, deadline=deadline, clock=clock, sleep=sleep, report=BatchActionReport())
    if ids:
        run_workers(senders, batch, min(concurrency, len(ids)), act)
    # What this pass did not get to (out of time, or a long Retry-After), for the next pass. A
    # run the API refused is not tried again: that would go on for ever.
    senders.report.remaining = 0 if senders.report.fatal else len(senders.queue)
    return senders.report


def _cancel_one(senders: Senders, run_id: int, *, batch: Batch, user) -> None:
    # Only this batch's runs, and only while still active: an earlier pass, a webhook or the
    # run's own end may have settled it. (On SQLite the whole call takes its database turn:
    # `run_cancel` writes the moment its answer comes.)
    with database_turn():
        run = _active_upstream(batch).filter(pk=run_id).first()
        if run is None:
            senders.count("skipped")
            return
        try:
            run_cancel(run=run, user=user)
        except RunActionFailed as exc:
            # A cancel is safe to repeat: an answer lost on the way is tried again too.
            _action_failed(senders, run_id, exc, transient=errors.Unavailable)
            return
    senders.count("done")


def _retry_one(senders: Senders, run_id: int, *, attempt: int, batch: Batch, user) -> None:
    with database_turn():
        run = (
            Run.objects.filter(pk=run_id, batch=batch, attempt=attempt, status__in=FAILED_STATUSES)
            .exclude(cyberdesk_id=None)
            .first()
        )
        if run is None:
            senders.count("skipped")  # retried already (by an earlier pass), or no longer failed
            return
        try:
            run_retry(run=run, user=user)
        except RunActionFailed as exc:
            # `run_retry` put the attempt back unless the retry may have started (no answer):
            # only a retry that surely never started is tried again.
            _action_failed(senders, run_id, exc, transient=errors.NotSent)
            return
    senders.count("done")


def _action_failed(senders: Senders, run_id: int, exc: RunActionFailed, *, transient) -> None:
    api_error = exc.api_error
    if isinstance(api_error, errors.RateLimited):
        wait = api_error.retry_after if api_error.retry_after is not None else 0.0
        wait = wait or RATE_LIMIT_DEFAULT_WAIT
        logger.warning("Batch run %s: throttled; every worker waits %.1f s", run_id, wait)
        senders.count("deferred")
        senders.put_back(run_id)
        if wait > RATE_LIMIT_MAX_WAIT:
            with senders.lock:
                senders.stop = True
                senders.report.resume_in = max(senders.report.resume_in, wait)
            return
        senders.pause(wait)
    elif isinstance(api_error, transient):
        with senders.lock:
            senders.unreachable_streak += 1
            wait = min(UNREACHABLE_MAX_WAIT, 2.0**senders.unreachable_streak)
        logger.warning("Batch run %s: %s; waiting %.0f s", run_id, exc, wait)
        senders.count("deferred")
        senders.put_back(run_id)
        senders.pause(wait)
    else:
        logger.warning("Batch run %s: %s", run_id, exc)
        with senders.lock:
            senders.report.failed += 1
            if len(senders.report.failures) < ACTION_FAILURES_KEPT:
                senders.report.failures.append(f"Run {run_id}: {exc}")
            if isinstance(api_error, errors.AuthError):
                senders.stop = True  # holds for every run: the next pass would fail the same way
                senders.report.fatal = str(api_error)
