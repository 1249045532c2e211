"""Step 3 of a batch: send its queued runs, each with its own stored idempotency key, with
bounded concurrency (run on the worker by `launcher.tasks.batch_submit_task`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Min, Q
from django.utils import timezone

from launcher.cyberdesk import errors, get_client
from launcher.models import Batch, Run, RunStatus, Submission
from launcher.services.batches.workers import (
    RATE_LIMIT_DEFAULT_WAIT,
    RATE_LIMIT_MAX_WAIT,
    UNREACHABLE_MAX_WAIT,
    Senders,
    database_turn,
    run_workers,
)
from launcher.services.run_sync import run_apply_upstream
from launcher.services.runs import run_request

logger = logging.getLogger(__name__)

# A claimed run is being sent; another sender leaves it alone this long. Longer than one send
# can take (write timeout × the client's attempts, plus its Retry-After waits).
CLAIM_TTL = timedelta(minutes=2)


@dataclass
class SubmitReport:
    accepted: int = 0  # the API has the run (created now, or replayed from an earlier send)
    rejected: int = 0  # the API refused it; nothing runs
    unknown: int = 0  # no answer: the reconciler settles it with the same key
    deferred: int = 0  # throttled or unreachable: still queued, sent by the next task
    remaining: int = 0  # queued runs left when this call returned
    resume_in: float = 0.0  # seconds the next task should wait (a long Retry-After)
    fatal: str = ""  # a refusal that holds for every run (bad key, unknown workflow)

    def as_dict(self) -> dict:
        return asdict(self)


def batch_submit(
    *,
    batch: Batch,
    concurrency: int | None = None,
    time_budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SubmitReport:
    """Send the batch's queued runs, `concurrency` at a time (default `BATCH_CONCURRENCY`).

    Each run is claimed (compare-and-set on `synced_at`) before it is sent, so two senders —
    a resumed task and one thought dead — never send the same run at once; and even if they
    did, its stored key makes the API create it once. Outcomes:

    - accepted → the upstream id and status are recorded;
    - refused (400/422) → `rejected` with the API's message;
    - 429 → every sender pauses for Retry-After (capped), the run goes back in the queue;
    - unreachable (nothing sent) → the same, with a growing pause;
    - no answer (timeout after sending, 5xx) → `unknown`, settled by the reconciler with the
      same key;
    - a bad API key or an unknown workflow → this run and all the rest are `rejected`.

    With `time_budget` (seconds), no new send starts after it; the report says how many runs
    remain and how long the next attempt should wait. When none remain the batch is marked
    `submitted`.
    """
    concurrency = max(1, concurrency or settings.BATCH_CONCURRENCY)
    ids = list(
        Run.objects.filter(batch=batch, submission=Submission.QUEUED)
        .order_by("batch_row", "pk")
        .values_list("pk", flat=True)
    )
    deadline = clock() + time_budget if time_budget is not None else None
    senders = Senders(ids, deadline=deadline, clock=clock, sleep=sleep, report=SubmitReport())
    batch_state = Batch.objects.filter(pk=batch.pk).values_list("state", flat=True).first()
    if ids and batch_state != Batch.State.CANCELLED:
        run_workers(senders, batch, min(concurrency, len(ids)), _send_one)

    report = senders.report
    if report.fatal:
        _reject_rest(batch, report.fatal)
    remaining = Run.objects.filter(batch=batch, submission=Submission.QUEUED)
    report.remaining = remaining.count()
    if report.remaining == 0:
        Batch.objects.filter(pk=batch.pk, state=Batch.State.SUBMITTING).update(
            state=Batch.State.SUBMITTED
        )
    elif not report.resume_in:
        # When every run left is held by another sender (a worker that died mid-send holds its
        # claim), look again when the oldest claim runs out, not in a busy loop.
        now = timezone.now()
        free = remaining.filter(Q(synced_at__isnull=True) | Q(synced_at__lte=now - CLAIM_TTL))
        if not free.exists():
            oldest = remaining.aggregate(oldest=Min("synced_at"))["oldest"]
            report.resume_in = max(1.0, (oldest + CLAIM_TTL - now).total_seconds() + 1)
    logger.info("Batch %s: %s", batch.pk, report.as_dict())
    return report


def _claim(run_id: int) -> Run | None:
    now = timezone.now()
    claimed = (
        Run.objects.filter(pk=run_id, submission=Submission.QUEUED)
        .filter(Q(synced_at__isnull=True) | Q(synced_at__lte=now - CLAIM_TTL))
        .update(synced_at=now, submission_attempts=F("submission_attempts") + 1)
    )
    if not claimed:
        return None
    return Run.objects.select_related("prompt_version").get(pk=run_id)


def _release(run_id: int) -> None:
    Run.objects.filter(pk=run_id, submission=Submission.QUEUED).update(synced_at=None)


def _send_one(senders: Senders, run_id: int) -> None:
    with database_turn():
        run = _claim(run_id)
    if run is None:
        return  # cancelled, already sent, or another sender has it
    try:
        upstream = get_client().create_run(
            idempotency_key=str(run.idempotency_key), **run_request(run)
        )
    except errors.CyberdeskError as exc:
        with database_turn():
            _record_failure(senders, run, exc)
        return
    with senders.lock:
        senders.unreachable_streak = 0
    with database_turn():
        run_apply_upstream(run, upstream, source="batch")
    senders.count("accepted")
    if run.status == RunStatus.CANCELLED:
        # Just created upstream, yet cancelled here: the batch was cancelled on the way.
        _cancel_late_arrival(run)


def _record_failure(senders: Senders, run: Run, exc: errors.CyberdeskError) -> None:
    if isinstance(exc, errors.RateLimited):
        wait = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_DEFAULT_WAIT
        logger.warning("Batch run %s: throttled; all senders wait %.1f s", run.pk, wait)
        _release(run.pk)
        senders.count("deferred")
        if wait > RATE_LIMIT_MAX_WAIT:
            with senders.lock:
                senders.stop = True
                senders.report.resume_in = max(senders.report.resume_in, wait)
            return
        senders.pause(wait)
        senders.put_back(run.pk)
    elif isinstance(exc, errors.NotSent):
        with senders.lock:
            senders.unreachable_streak += 1
            wait = min(UNREACHABLE_MAX_WAIT, 2.0**senders.unreachable_streak)
        logger.warning("Batch run %s: not sent (%s); waiting %.0f s", run.pk, exc, wait)
        _release(run.pk)
        senders.count("deferred")
        senders.pause(wait)
        senders.put_back(run.pk)
    elif isinstance(exc, errors.InvalidRequest):
        _reject(run, f"{exc} Nothing was started.")
        senders.count("rejected")
    elif isinstance(exc, errors.AuthError | errors.NotFound):
        # Holds for every run of the batch: stop, and say why on each run left.
        message = (
            f"{exc} Nothing was started; the batch stopped."
            if isinstance(exc, errors.AuthError)
            else f"{exc} Cyberdesk does not know this workflow (any more); nothing was started."
        )
        _reject(run, message)
        senders.count("rejected")
        with senders.lock:
            senders.stop = True
            senders.report.fatal = message
    else:
        # Sent, no usable answer: it may exist upstream. Never sent again with a new key; the
        # reconciler re-sends it with this one.
        Run.objects.filter(pk=run.pk, submission=Submission.QUEUED).update(
            submission=Submission.UNKNOWN, submission_error=str(exc)[:2000]
        )
        senders.count("unknown")
        logger.warning("Batch run %s: outcome unknown: %s", run.pk, exc)


def _cancel_late_arrival(run: Run) -> None:
    """The batch was cancelled while this run was on its way: cancel it upstream too."""
    try:
        upstream = get_client().cancel_run(run.cyberdesk_id)
    except errors.CyberdeskError as exc:
        logger.warning("Batch run %s: cancelling the late arrival failed: %s", run.pk, exc)
        return
    with database_turn():
        run_apply_upstream(run, upstream, source="batch")


def _reject(run: Run, message: str) -> None:
    Run.objects.filter(pk=run.pk).exclude(submission=Submission.ACCEPTED).update(
        submission=Submission.REJECTED, status=RunStatus.REJECTED, submission_error=message[:2000]
    )
    logger.warning("Batch run %s rejected: %s", run.pk, message)


def _reject_rest(batch: Batch, message: str) -> None:
    Run.objects.filter(batch=batch, submission=Submission.QUEUED).update(
        submission=Submission.REJECTED,
        status=RunStatus.REJECTED,
        submission_error=f"Not sent: {message}"[:2000],
    )
