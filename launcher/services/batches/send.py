"""Step 3 of a batch: send its queued runs, each with its own stored idempotency key.

The batch is cut into chunks (`chunks.py`) that any `db_worker` may claim; a sender
(`launcher.tasks.batch_submit_task`) claims a chunk with one statement, sends its runs with
bounded concurrency, records the answers in bulk, closes the chunk and claims the next. Two
workers sending the same batch never hold the same chunk, and a worker that dies lets its lease
run out for another to take over.

The HTTP calls run on a small thread pool; every database read and write stays on the
calling thread (so SQLite needs no turns, and the threads open no connections of their own).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from launcher.cyberdesk import errors, get_client, types
from launcher.models import Batch, Run, RunEvent, RunStatus, Submission
from launcher.services.batches.chunks import (
    CHUNK_LEASE,
    CHUNK_RENEW_EVERY,
    ClaimedChunk,
    chunk_claim,
    chunk_close,
    chunk_renew,
    chunks_close_settled,
    chunks_ensure,
    chunks_next_free_at,
    chunks_release,
)
from launcher.services.batches.workers import (
    RATE_LIMIT_DEFAULT_WAIT,
    RATE_LIMIT_MAX_WAIT,
    UNREACHABLE_MAX_WAIT,
)
from launcher.services.run_events import run_event_record, run_events_record_changed
from launcher.services.run_sync import run_apply_upstream, runs_apply_upstream_many
from launcher.services.runs import run_request

logger = logging.getLogger(__name__)

# Kept for callers that spoke of a run's claim: a run is now held through its chunk's lease.
CLAIM_TTL = CHUNK_LEASE
# Answers are written in bulk, at least this often (a kill loses at most these; their runs are
# sent again with the same keys and the API replays its first answer).
RECORD_EVERY = 50


@dataclass
class SubmitReport:
    accepted: int = 0  # the API has the run (created now, or replayed from an earlier send)
    rejected: int = 0  # the API refused it; nothing runs
    unknown: int = 0  # no answer: the reconciler settles it with the same key
    deferred: int = 0  # throttled or unreachable: still queued, sent by the next task
    remaining: int = 0  # queued runs left when this call returned
    resume_in: float = 0.0  # seconds the next task should wait (a long Retry-After)
    fatal: str = ""  # a refusal that holds for every run (bad key, unknown workflow)
    chunks: int = 0  # chunks this call claimed
    taken_over: int = 0  # of those, chunks another sender had held and left (its lease ran out)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Pass:
    """One call's state: its clock, the shared pause after a 429, what it has to record."""

    holder: str
    concurrency: int
    deadline: float | None
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    report: SubmitReport = field(default_factory=SubmitReport)
    paused_until: float = 0.0
    unreachable_streak: int = 0
    stop: bool = False  # fatal refusal, cancelled batch, lost lease or a long Retry-After
    answers: list = field(default_factory=list)  # (run, upstream) not yet recorded

    def out_of_time(self) -> bool:
        return self.deadline is not None and max(self.clock(), self.paused_until) >= self.deadline


def batch_submit(
    *,
    batch: Batch,
    concurrency: int | None = None,
    time_budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    holder: str | None = None,
) -> SubmitReport:
    """Send the batch's queued runs chunk by chunk, `concurrency` at a time (default
    `BATCH_CONCURRENCY`), until none is left to claim or `time_budget` (seconds) is spent.

    Outcomes per run:

    - accepted → the upstream id and status are recorded (in bulk);
    - refused (400/422) → `rejected` with the API's message;
    - 429 → every send of this call pauses for Retry-After (a wait over a minute ends the call:
      the report's `resume_in` says when to go on), the run goes back in the queue;
    - unreachable (nothing sent) → the same, with a growing pause;
    - no answer (timeout after sending, 5xx) → `unknown`, settled by the reconciler with the
      same key;
    - a bad API key or an unknown workflow → this run and all the rest are `rejected`.

    `holder` names this sender in the chunk leases (default: a fresh id). When no queued run
    remains the batch is marked `submitted`.
    """
    state = Batch.objects.filter(pk=batch.pk).values_list("state", flat=True).first()
    run = _Pass(
        holder=(holder or uuid.uuid4().hex)[:64],
        concurrency=max(1, concurrency or settings.BATCH_CONCURRENCY),
        deadline=clock() + time_budget if time_budget is not None else None,
        clock=clock,
        sleep=sleep,
    )
    if state == Batch.State.SUBMITTING:
        chunks_ensure(batch=batch)
        pool = ThreadPoolExecutor(run.concurrency) if run.concurrency > 1 else None
        try:
            while not run.stop and not run.out_of_time() and not _cancelled(batch.pk):
                chunk = chunk_claim(batch_id=batch.pk, holder=run.holder)
                if chunk is None:
                    break
                run.report.chunks += 1
                run.report.taken_over += chunk.claims > 1
                _send_chunk(run, chunk, pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        if run.report.resume_in:
            # Nobody may send sooner: the API asked us to wait.
            until = timezone.now() + timedelta(seconds=run.report.resume_in)
            chunks_release(batch_id=batch.pk, holder=run.holder, until=until)
        else:
            chunks_release(batch_id=batch.pk, holder=run.holder)

    report = run.report
    if report.fatal:
        _reject_rest(batch, report.fatal)
    chunks_close_settled(batch_id=batch.pk)
    report.remaining = Run.objects.filter(batch=batch, submission=Submission.QUEUED).count()
    if report.remaining == 0:
        Batch.objects.filter(pk=batch.pk, state=Batch.State.SUBMITTING).update(
            state=Batch.State.SUBMITTED
        )
    elif not report.resume_in and state == Batch.State.SUBMITTING:
        # Every chunk left is held by another sender (perhaps one that died): look again when
        # the first lease runs out, not in a busy loop.
        now = timezone.now()
        free_at = chunks_next_free_at(batch_id=batch.pk, now=now)
        if free_at is not None and free_at > now:
            report.resume_in = max(1.0, (free_at - now).total_seconds() + 1)
    logger.info("Batch %s: %s", batch.pk, report.as_dict())
    return report


def _send_chunk(run: _Pass, chunk: ClaimedChunk, pool: ThreadPoolExecutor | None) -> None:
    """Send the chunk's queued runs, keeping its lease alive; record what came back."""
    waiting = deque(chunk.queued_runs().select_related("prompt_version"))
    # Each of these is about to be sent (once more): counted in one statement, not per run.
    Run.objects.filter(pk__in=[queued.pk for queued in waiting]).update(
        submission_attempts=F("submission_attempts") + 1
    )
    in_flight: dict[Future, Run] = {}
    renewed_at = run.clock()
    lease_lost = False
    try:
        while waiting or in_flight:
            if run.clock() - renewed_at >= CHUNK_RENEW_EVERY or len(run.answers) >= RECORD_EVERY:
                _record(run)
                if _cancelled(chunk.batch_id):
                    run.stop = True  # those in flight still land (and are cancelled upstream)
            if run.clock() - renewed_at >= CHUNK_RENEW_EVERY:
                renewed_at = run.clock()
                if not chunk_renew(chunk, holder=run.holder):
                    logger.warning("Batch chunk %s: lease lost; leaving it", chunk.id)
                    lease_lost = run.stop = True
            now = run.clock()
            can_send = not run.stop and not run.out_of_time() and run.paused_until <= now
            while can_send and waiting and len(in_flight) < run.concurrency:
                queued = waiting.popleft()
                in_flight[_start(pool, queued)] = queued
            if in_flight:
                done, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    _outcome(run, in_flight.pop(future), future, waiting)
            elif waiting and not run.stop and not run.out_of_time():
                run.sleep(min(run.paused_until - now, 1.0))  # re-check the lease while waiting
            elif waiting:
                # Stopped or out of time: the rest stays queued for the next sender, which
                # waits out what is left of a pause.
                run.report.resume_in = max(run.report.resume_in, run.paused_until - now)
                break
    finally:
        _record(run)
    if not lease_lost:
        chunk_close(chunk, holder=run.holder)


def _start(pool: ThreadPoolExecutor | None, queued: Run) -> Future:
    """Send one run: on the pool, or right here (concurrency 1). Errors land in the future."""
    request = dict(idempotency_key=str(queued.idempotency_key), **run_request(queued))
    if pool is not None:
        return pool.submit(_create, request)
    future: Future = Future()
    try:
        future.set_result(_create(request))
    except errors.CyberdeskError as exc:
        future.set_exception(exc)
    return future


def _create(request: dict) -> types.Run:
    return get_client().create_run(**request)


def _outcome(run: _Pass, queued: Run, future: Future, waiting: deque) -> None:
    exc = future.exception()
    if exc is None:
        run.unreachable_streak = 0
        run.answers.append((queued, future.result()))
        run.report.accepted += 1
    elif isinstance(exc, errors.CyberdeskError):
        _record_failure(run, queued, exc, waiting)
    else:
        raise exc  # not an API error: a bug, or the worker dying — let the task fail


def _record(run: _Pass) -> None:
    """Write the answers gathered so far, in bulk; cancel upstream any run whose batch was
    cancelled while it was on its way."""
    answers, run.answers = run.answers, []
    upstream_by_pk = {queued.pk: upstream for queued, upstream in answers}
    for row in runs_apply_upstream_many(answers, source="batch"):
        upstream = upstream_by_pk.get(row.pk)
        if row.status == RunStatus.CANCELLED and upstream.status != RunStatus.CANCELLED:
            _cancel_late_arrival(row)


def _cancelled(batch_id: int) -> bool:
    return Batch.objects.filter(pk=batch_id, state=Batch.State.CANCELLED).exists()


def _record_failure(run: _Pass, queued: Run, exc: errors.CyberdeskError, waiting: deque) -> None:
    if isinstance(exc, errors.RateLimited):
        wait_s = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_DEFAULT_WAIT
        logger.warning("Batch run %s: throttled; every sender waits %.1f s", queued.pk, wait_s)
        run.report.deferred += 1
        if wait_s > RATE_LIMIT_MAX_WAIT:
            run.stop = True
            run.report.resume_in = max(run.report.resume_in, wait_s)
            return
        run.paused_until = max(run.paused_until, run.clock() + wait_s)
        waiting.append(queued)
    elif isinstance(exc, errors.NotSent):
        run.unreachable_streak += 1
        wait_s = min(UNREACHABLE_MAX_WAIT, 2.0**run.unreachable_streak)
        logger.warning("Batch run %s: not sent (%s); waiting %.0f s", queued.pk, exc, wait_s)
        run.report.deferred += 1
        run.paused_until = max(run.paused_until, run.clock() + wait_s)
        waiting.append(queued)
    elif isinstance(exc, errors.InvalidRequest):
        _reject(queued, f"{exc} Nothing was started.")
        run.report.rejected += 1
    elif isinstance(exc, errors.AuthError | errors.NotFound):
        # Holds for every run of the batch: stop, and say why on each run left.
        message = (
            f"{exc} Nothing was started; the batch stopped."
            if isinstance(exc, errors.AuthError)
            else f"{exc} Cyberdesk does not know this workflow (any more); nothing was started."
        )
        _reject(queued, message)
        run.report.rejected += 1
        run.stop = True
        run.report.fatal = message
    else:
        # Sent, no usable answer: it may exist upstream. Never sent again with a new key; the
        # reconciler re-sends it with this one.
        Run.objects.filter(pk=queued.pk, submission=Submission.QUEUED).update(
            submission=Submission.UNKNOWN, submission_error=str(exc)[:2000]
        )
        run.report.unknown += 1
        logger.warning("Batch run %s: outcome unknown: %s", queued.pk, exc)


def _cancel_late_arrival(row: Run) -> None:
    """The batch was cancelled while this run was on its way: cancel it upstream too."""
    try:
        cancelled = get_client().cancel_run(row.cyberdesk_id)
    except errors.CyberdeskError as exc:
        logger.warning("Batch run %s: cancelling the late arrival failed: %s", row.pk, exc)
        return
    run_apply_upstream(Run.objects.get(pk=row.pk), cancelled, source="batch")


def _reject(run: Run, message: str) -> None:
    with transaction.atomic():
        rejected = (
            Run.objects.filter(pk=run.pk)
            .exclude(submission=Submission.ACCEPTED)
            .update(
                submission=Submission.REJECTED,
                status=RunStatus.REJECTED,
                submission_error=message[:2000],
            )
        )
        if rejected:
            run_event_record(
                run=run,
                kind=RunEvent.Kind.REJECTED,
                source=RunEvent.Source.BATCH,
                detail={"message": message[:500]},
            )
    logger.warning("Batch run %s rejected: %s", run.pk, message)


def _reject_rest(batch: Batch, message: str) -> None:
    error = f"Not sent: {message}"[:2000]
    queued = list(
        Run.objects.filter(batch=batch, submission=Submission.QUEUED).values_list("pk", flat=True)
    )
    Run.objects.filter(batch=batch, submission=Submission.QUEUED).update(
        submission=Submission.REJECTED, status=RunStatus.REJECTED, submission_error=error
    )
    # History: the runs that were queued and are now rejected by this update (one sent
    # meanwhile by another sender is accepted, not rejected, and gets no entry).
    run_events_record_changed(
        candidate_ids=queued,
        changed={"submission": Submission.REJECTED, "submission_error": error},
        kind=RunEvent.Kind.REJECTED,
        source=RunEvent.Source.BATCH,
        detail={"message": error[:500]},
    )
