"""A batch's runs in chunks that any worker may claim, each held under a lease.

The plan cuts a batch into chunks of `CHUNK_SIZE` runs (`chunks_plan`). A sender claims the
next open chunk whose lease is free with one UPDATE (`chunk_claim`), renews the lease while it
sends (`chunk_renew`), and closes the chunk when none of its runs is left `queued`
(`chunk_close`). A worker killed with `kill -9` renews nothing: its chunk is free again once
`CHUNK_LEASE` runs out, and the next sender — on any machine — takes it over. Its runs are then
sent again with their stored idempotency keys, so the API creates each one once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from launcher.models import Batch, BatchChunk, Run, Submission

CHUNK_SIZE = 50
# How long a claim holds without renewal. The holder renews it every `CHUNK_RENEW_EVERY`
# (also while it waits out a 429), so only a dead or frozen worker lets it run out.
CHUNK_LEASE = timedelta(seconds=15)
CHUNK_RENEW_EVERY = 5.0  # seconds, on the sender's clock


@dataclass(frozen=True)
class ClaimedChunk:
    id: int
    batch_id: int
    number: int
    first_run_id: int
    last_run_id: int
    claims: int  # 1 the first time; more when it was taken over from a sender that died

    def queued_runs(self):
        """The chunk's runs still to send, in plan order."""
        return Run.objects.filter(
            batch_id=self.batch_id,
            pk__gte=self.first_run_id,
            pk__lte=self.last_run_id,
            submission=Submission.QUEUED,
        ).order_by("pk")


def chunks_plan(*, batch: Batch, run_ids: list[int]) -> int:
    """Store the chunks of a batch whose runs (ids in plan order) were just stored; return how
    many. Used by the plan, and by the sender for a batch planned before chunks existed."""
    run_ids = sorted(run_ids)
    chunks = [
        BatchChunk(
            batch=batch,
            number=number,
            first_run_id=part[0],
            last_run_id=part[-1],
            size=len(part),
        )
        for number, start in enumerate(range(0, len(run_ids), CHUNK_SIZE))
        if (part := run_ids[start : start + CHUNK_SIZE])
    ]
    BatchChunk.objects.bulk_create(chunks, batch_size=500)
    return len(chunks)


def chunks_ensure(*, batch: Batch) -> None:
    """Cut a batch that has queued runs but no chunks (planned before chunks existed)."""
    if BatchChunk.objects.filter(batch=batch).exists():
        return
    ids = list(
        Run.objects.filter(batch=batch, submission=Submission.QUEUED).values_list("pk", flat=True)
    )
    if ids:
        chunks_plan(batch=batch, run_ids=ids)


def _table() -> str:
    return connection.ops.quote_name(BatchChunk._meta.db_table)


def chunk_claim(*, batch_id: int, holder: str, now: datetime | None = None) -> ClaimedChunk | None:
    """Claim the first open chunk of the batch whose lease is free, in one statement.

    On PostgreSQL the inner SELECT skips rows another claim has locked (`FOR UPDATE SKIP
    LOCKED`), so two workers claiming at the same instant get two different chunks; the outer
    WHERE checks the lease again, so a chunk is never held twice. SQLite runs one writer at a
    time, which gives the same guarantee.
    """
    now = now or timezone.now()
    lock = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    free = "done_at IS NULL AND (lease_until IS NULL OR lease_until <= %s)"
    # Only the quoted table name and fixed SQL are formatted in; every value is a parameter.
    sql = (
        f"UPDATE {_table()} SET lease_until = %s, holder = %s, claims = claims + 1 "  # noqa: S608
        f"WHERE id = (SELECT id FROM {_table()} WHERE batch_id = %s AND {free} "
        f"ORDER BY number LIMIT 1{lock}) AND {free} "
        "RETURNING id, batch_id, number, first_run_id, last_run_id, claims"
    )
    until = now + CHUNK_LEASE
    with connection.cursor() as cursor:
        cursor.execute(sql, [until, holder[:64], batch_id, now, now])
        row = cursor.fetchone()
    return ClaimedChunk(*row) if row else None


def chunk_renew(chunk: ClaimedChunk, *, holder: str) -> bool:
    """Extend the lease; False when it was lost (it ran out and another sender took it)."""
    now = timezone.now()
    return bool(
        BatchChunk.objects.filter(pk=chunk.id, holder=holder[:64], done_at__isnull=True)
        .filter(lease_until__gt=now)
        .update(lease_until=now + CHUNK_LEASE)
    )


def chunk_close(chunk: ClaimedChunk, *, holder: str) -> bool:
    """Close the chunk when none of its runs is queued any more, else hand it back (lease
    cleared) for the next sender; return whether it closed."""
    left = chunk.queued_runs().exists()
    updates = {"lease_until": None} if left else {"done_at": timezone.now(), "lease_until": None}
    BatchChunk.objects.filter(pk=chunk.id, holder=holder[:64]).update(**updates)
    return not left


def chunks_release(*, batch_id: int, holder: str, until: datetime | None = None) -> None:
    """Hand back what `holder` still holds of the batch (a slice that ended early); with
    `until`, nobody may claim it before then (a long Retry-After)."""
    BatchChunk.objects.filter(batch_id=batch_id, holder=holder[:64], done_at__isnull=True).update(
        lease_until=until
    )


def chunks_close_settled(*, batch_id: int) -> int:
    """Close the batch's open chunks that have no queued run left (after a cancel, or a fatal
    refusal that rejected the rest); return how many are still open."""
    open_chunks = BatchChunk.objects.filter(batch_id=batch_id, done_at__isnull=True)
    if not Run.objects.filter(batch_id=batch_id, submission=Submission.QUEUED).exists():
        open_chunks.update(done_at=timezone.now(), lease_until=None)
        return 0
    return open_chunks.count()


def chunks_next_free_at(*, batch_id: int, now: datetime | None = None) -> datetime | None:
    """When the batch's first open chunk can be claimed (now, if one is free); None when no
    chunk is open."""
    now = now or timezone.now()
    open_chunks = BatchChunk.objects.filter(batch_id=batch_id, done_at__isnull=True)
    if open_chunks.filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now)).exists():
        return now
    return open_chunks.order_by("lease_until").values_list("lease_until", flat=True).first()
