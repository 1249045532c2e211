"""Keeping each run's local state true to the API.

Three ways news about a run arrives, all funnelled through `run_apply_upstream`:

- `run_refresh` — the run page's status poll. However many people (and processes) watch a run,
  at most one of them calls the API per `RUN_REFRESH_INTERVAL_SECONDS`: an
  `UPDATE … SET synced_at = now WHERE synced_at <= now - interval` claims the refresh
  (compare-and-set) and only the poll whose UPDATE touched the row makes the call. Every other
  poll reads the database.
- `runs_refresh_many` — the same claim for many runs at once, refreshed with one list call per
  workflow (the reconciler, batch pages).
- the webhook receiver (`launcher/webhooks.py`).

Status only moves forward (`STATUS_RANK`): an older, slower or redelivered piece of news never
overwrites a newer one, and once a run is finished its first terminal status sticks.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from launcher.cyberdesk import errors, get_client, quick_reads, types
from launcher.models import (
    STATUS_RANK,
    TERMINAL_STATUSES,
    Run,
    RunEvent,
    RunStatus,
    Submission,
)
from launcher.services.api_status import api_outage, api_outage_clear, api_outage_note
from launcher.services.rollups import RollupMoves, rollups_record, rollups_snapshot
from launcher.services.run_events import run_event_record

logger = logging.getLogger(__name__)

# What a list call asks for: enough to show status, results and checks. The message history is
# large, so it is fetched once, with the full run, when the run finishes (`run_finalize`).
LIST_FIELDS = [
    "started_at",
    "ended_at",
    "error",
    "output_data",
    "post_run_checks",
    "usage_metadata",
]
LIST_PAGE_SIZE = 1000  # the API's maximum
# The first page asks for a small multiple of the runs wanted: they are usually the newest (a
# page of runs being watched), and listing up to 1,000 runs to find a few costs the API far
# more. Each further page doubles, up to the maximum, so runs pushed far down by newer ones
# are still reached in a few calls.
LIST_FIRST_PAGE_MIN = 50
LIST_MAX_PAGES = 10
# Launcher stores a run before sending it, so the upstream created_at is a little later than
# ours; the margin absorbs clock differences between the two machines.
CREATED_AT_MARGIN = timedelta(minutes=5)
# Runs a list call did not return (clock far off, thousands of newer runs) are fetched one by
# one, but only this many per call, so a batch page poll stays quick.
SINGLE_FETCH_LIMIT = 10
CLAIM_CHUNK = 500  # ids per claiming UPDATE (SQLite allows 999 parameters)


def refresh_interval() -> timedelta:
    return timedelta(seconds=settings.RUN_REFRESH_INTERVAL_SECONDS)


def run_apply_upstream(
    run: Run, upstream: types.Run, *, restart: bool = False, source: str = "poll"
) -> bool:
    """Copy the API's view of a run onto our row; return whether anything changed.

    Status only moves forward by `STATUS_RANK`; a finished run keeps its first terminal status.
    Values missing from `upstream` (a `fields=` projection, a sparse payload) never erase what
    we already know.

    `restart=True` is for the launcher's own retry (`run_retry`, after it bumped `run.attempt`):
    the API retries in place — same id, back to `scheduling`, outputs cleared — so the fresh
    attempt replaces the finished one wholesale. Nothing else may move a run backwards.

    Once an attempt is finished its results are settled: later news about the same attempt (a
    poll, a webhook, a redelivery under another event id) may fill in what is still missing
    (the message history a list call leaves out) but never replaces a value already kept.

    The row is re-read under a lock, so a webhook and a poll landing together cannot interleave
    and step the status back. `run` is updated in place. A status change is written to the run's
    history (`RunEvent`) with `source` (poll, webhook, reconciler, launcher, user, batch) in the
    same transaction.
    """
    changed, _ = _apply(run, upstream, restart=restart, source=source)
    return changed


def _apply(
    run: Run, upstream: types.Run, *, restart: bool = False, source: str = "poll"
) -> tuple[bool, bool]:
    """`run_apply_upstream`, also telling whether this call finished the run."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        was_finished = locked.is_finished
        previous_status = locked.status
        counted = rollups_snapshot(locked)
        updates = _changes(locked, upstream, restart=restart)
        if updates:
            for field, value in updates.items():
                setattr(locked, field, value)
            locked.save(update_fields=list(updates))
            # The kept counters move with the run, under the same lock and transaction.
            rollups_record(locked, counted)
            if updates.get("submission") == Submission.ACCEPTED:
                run_event_record(
                    run=locked,
                    kind=RunEvent.Kind.ACCEPTED,
                    source=source,
                    detail={"cyberdesk_id": str(locked.cyberdesk_id)},
                )
            if "status" in updates and previous_status != locked.status:
                run_event_record(
                    run=locked,
                    kind=RunEvent.Kind.STATUS,
                    source=source,
                    detail={"from": previous_status, "to": locked.status},
                )
    for field in _SYNCED_FIELDS:
        setattr(run, field, getattr(locked, field))
    return bool(updates), (not was_finished and locked.is_finished)


def runs_apply_upstream_many(
    answers: Sequence[tuple[Run, types.Run]], *, source: str = "batch"
) -> list[Run]:
    """`run_apply_upstream` for many runs at once (a batch chunk's answers): one locking read
    of all their rows, the same forward-only comparison per run, one bulk UPDATE, and their
    history entries (accepted, status changed) in one bulk INSERT, all in one transaction.
    Returns the rows as written (with their new state). Runs this finishes get
    `run_finalize_task`."""
    if not answers:
        return []
    with transaction.atomic():
        locked = {
            row.pk: row
            for row in Run.objects.select_for_update()
            .filter(pk__in=[run.pk for run, _ in answers])
            .only(*_SYNCED_FIELDS, "prompt_version", "batch", "model_option")
        }
        written: list[Run] = []
        fields: set[str] = set()
        finished_ids: list[int] = []
        events: list[RunEvent] = []
        now = timezone.now()
        moves = RollupMoves()  # applied once for the whole chunk
        for run, upstream in answers:
            row = locked.get(run.pk)
            if row is None:
                continue
            was_finished = row.is_finished
            previous_status = row.status
            counted = rollups_snapshot(row)
            updates = _changes(row, upstream, restart=False)
            for field, value in updates.items():
                setattr(row, field, value)
            # bulk_update skips Run.save(), which derives these on the single path.
            for field in row.derived_refresh(updates):
                updates[field] = getattr(row, field)
            if updates:
                written.append(row)
                fields.update(updates)
                moves.add(row, counted)
                if not was_finished and row.is_finished:
                    finished_ids.append(row.pk)
            if updates.get("submission") == Submission.ACCEPTED:
                detail = {"cyberdesk_id": str(row.cyberdesk_id)}
                events.append(_event(row, RunEvent.Kind.ACCEPTED, source, detail, now))
            if "status" in updates and previous_status != row.status:
                detail = {"from": previous_status, "to": row.status}
                events.append(_event(row, RunEvent.Kind.STATUS, source, detail, now))
        if written:
            # Each row gets every field any row changed: the others are the values just read
            # under the lock, so they are written back unchanged.
            Run.objects.bulk_update(written, sorted(fields), batch_size=500)
            moves.apply()
        if events:
            RunEvent.objects.bulk_create(events, batch_size=500)
    if finished_ids:
        _enqueue_finalize(finished_ids)
    return list(locked.values())


def _event(run: Run, kind: str, source: str, detail: dict, at) -> RunEvent:
    """As `run_events.run_event_record` makes it, unsaved (for a bulk insert)."""
    return RunEvent(
        run_id=run.pk, attempt=run.attempt, kind=kind, source=source, detail=detail, at=at
    )


# The state this module keeps true; re-reading only these keeps a caller's select_related
# relations cached (a full refresh_from_db() drops them).
_SYNCED_FIELDS = (
    "attempt",
    "cyberdesk_id",
    "submission",
    "submission_error",
    "status",
    "started_at",
    "ended_at",
    "output_data",
    "errors",
    "post_run_checks",
    "usage_metadata",
    "message_history",
    "cost_usd",
    "attachments",
    "synced_at",
    "duration_ms",
    *Run._CELL_FIELDS,
)


def _changes(run: Run, upstream: types.Run, *, restart: bool) -> dict:
    """The field updates `upstream` brings to `run` (empty when it brings nothing new)."""
    updates: dict = {}
    if run.cyberdesk_id is None:
        updates["cyberdesk_id"] = upstream.id
    elif run.cyberdesk_id != upstream.id:
        logger.warning("Run %s: ignoring news about another upstream run %s", run.pk, upstream.id)
        return {}
    if run.submission != Submission.ACCEPTED:
        # Seeing the run upstream settles a launch whose outcome we did not know.
        updates["submission"] = Submission.ACCEPTED
        updates["submission_error"] = ""

    status = upstream.status
    if status not in STATUS_RANK or status in (RunStatus.PENDING, RunStatus.REJECTED):
        logger.warning("Run %s: ignoring unknown upstream status %r", run.pk, status)
        return updates
    if restart:
        updates.update(
            status=status,
            started_at=upstream.started_at,
            ended_at=upstream.ended_at,
            output_data=upstream.output_data,
            errors=list(upstream.error or []),
            post_run_checks=list(upstream.post_run_checks or []),
            usage_metadata=upstream.usage_metadata,
            message_history=upstream.run_message_history,
            cost_usd=None,
            attachments=None,  # the new attempt's files are fetched when it finishes
        )
        return {k: v for k, v in updates.items() if getattr(run, k) != v}

    # `rejected` is our own conclusion that the API never took the run; seeing it upstream
    # proves otherwise, so the API's status replaces it.
    believed_unsent = run.status == RunStatus.REJECTED
    if STATUS_RANK[status] < STATUS_RANK[run.status] and not believed_unsent:
        return updates  # stale news: a newer state is already recorded
    if run.is_finished and status != run.status and not believed_unsent:
        return updates  # the first terminal status sticks
    settled = run.is_finished and not believed_unsent
    updates["status"] = status
    known = {
        "started_at": upstream.started_at,
        "ended_at": upstream.ended_at,
        "output_data": upstream.output_data,
        "errors": list(upstream.error or []),
        "post_run_checks": list(upstream.post_run_checks or []),
        "usage_metadata": upstream.usage_metadata,
        "message_history": upstream.run_message_history,
    }
    for field, value in known.items():
        if value is None or value == []:
            continue  # not in this projection or payload: keep what we have
        current = getattr(run, field)
        if settled and current is not None and current != []:
            # A finished attempt's results are kept as first recorded: a second terminal
            # event (a late poll, a webhook redelivered under another id) only fills gaps.
            continue
        updates[field] = value
    return {k: v for k, v in updates.items() if getattr(run, k) != v}


def run_refresh(run: Run, *, force: bool = False, viewer: bool = False) -> Run:
    """Bring `run` up to date from the API at most once per refresh interval.

    The compare-and-set UPDATE decides which caller refreshes; all others only re-read the
    row. `force=True` skips the interval (after an action of ours, such as a cancel) but still
    records the refresh. API errors are logged and swallowed: the page shows the last known
    state and the next poll tries again.

    A `run` whose `synced_at` falls within the interval is returned as it is, with no query:
    the claim could not win, and the copy was read after that stamp, so within the interval —
    as fresh as the re-read a lost claim makes. (A poll reads the run and passes it straight
    in: the usual poll costs that one read.)

    `viewer=True` is a web request refreshing what it shows: never waiting on the API. While an
    outage is noted (`api_status`) nothing is tried; otherwise one quick attempt, and a run that
    finishes here gets its cost and attachments from the worker (`run_finalize_task`).
    """
    if run.cyberdesk_id is None or run.is_finished:
        return run
    now = timezone.now()
    if not force and run.synced_at is not None and run.synced_at > now - refresh_interval():
        return run
    if viewer and api_outage() is not None:
        return run
    claim = Run.objects.filter(pk=run.pk, cyberdesk_id__isnull=False).exclude(
        status__in=TERMINAL_STATUSES
    )
    if not force:
        claim = claim.filter(Q(synced_at__isnull=True) | Q(synced_at__lte=now - refresh_interval()))
    if not claim.update(synced_at=now):
        run.refresh_from_db(fields=_SYNCED_FIELDS)
        return run

    try:
        if viewer:
            with quick_reads():
                upstream = get_client().get_run(run.cyberdesk_id)
        else:
            upstream = get_client().get_run(run.cyberdesk_id)
    except errors.CyberdeskError as exc:
        logger.warning("Run %s: refresh failed: %s", run.pk, exc)
        api_outage_note(exc)
        run.refresh_from_db(fields=_SYNCED_FIELDS)
        return run
    api_outage_clear()
    _, finished = _apply(run, upstream)
    if finished and viewer:
        _enqueue_finalize([run.pk])
    elif finished:
        # The full run (message history included) is already here; only the cost is missing.
        run_cost_fetch(run)
        run_attachments_fetch(run)
    return run


def runs_refresh_many(
    runs: Iterable[Run],
    *,
    stale_after: timedelta | None = None,
    source: str = "poll",
    viewer: bool = False,
) -> int:
    """Refresh many runs with one list call per workflow; return how many runs changed.

    Claims the runs not refreshed within `stale_after` (default: the refresh interval) with one
    compare-and-set UPDATE per chunk of ids, so pollers, the reconciler and other processes
    never refresh the same run twice in an interval. Runs that finish here are finalized
    (message history, cost, attachments) by a background task.

    `viewer=True` (a page's poll): nothing is tried while an API outage is noted, and each call
    is one quick attempt (see `run_refresh`).
    """
    candidates = [run for run in runs if run.cyberdesk_id is not None and not run.is_finished]
    if not candidates:
        return 0
    if viewer:
        if api_outage() is not None:
            return 0
        with quick_reads():
            return _refresh_many(candidates, stale_after=stale_after, source=source)
    return _refresh_many(candidates, stale_after=stale_after, source=source)


def _refresh_many(candidates: list[Run], *, stale_after: timedelta | None, source: str) -> int:
    stale_before = timezone.now() - (stale_after or refresh_interval())
    if all(run.synced_at is not None and run.synced_at > stale_before for run in candidates):
        # Each copy was read after its stamp, which is within the interval: no claim could win
        # (as in `run_refresh`), so a poll between refreshes writes nothing.
        return 0
    wanted_by_workflow: dict = defaultdict(list)
    for run in candidates:
        wanted_by_workflow[run.workflow_id].append(run.pk)
    by_workflow: dict = {}
    for workflow_id, ids in wanted_by_workflow.items():
        claimed = _claim(ids, stale_before=stale_before, sweep=True)
        if claimed:
            by_workflow[workflow_id] = claimed

    changed = 0
    finished_ids: list[int] = []
    client = get_client()
    for workflow_id, workflow_runs in by_workflow.items():
        found = _list_upstream(client, workflow_id, workflow_runs)
        if not found and api_outage() is not None:
            break  # unreachable: the single fetches and other workflows would wait on it too
        missing = [run for run in workflow_runs if run.cyberdesk_id not in found]
        for run in missing[:SINGLE_FETCH_LIMIT]:
            try:
                found[run.cyberdesk_id] = client.get_run(run.cyberdesk_id)
            except errors.CyberdeskError as exc:
                logger.warning("Run %s: refresh failed: %s", run.pk, exc)
                api_outage_note(exc)
                if isinstance(exc, errors.Unavailable):
                    break  # the next would wait on the same unreachable API
        for run in workflow_runs:
            upstream = found.get(run.cyberdesk_id)
            if upstream is None:
                continue
            # `_claim` has just read these rows: a run the news does not change is left alone
            # (no lock, no re-read), so an unchanged page costs the same at 5 rows as at 50.
            # A run it does change is locked and compared again, so forward-only still holds
            # against anything written since the claim.
            if not _changes(run, upstream, restart=False):
                continue
            was_changed, finished = _apply(run, upstream, source=source)
            changed += was_changed
            if finished:
                finished_ids.append(run.pk)
    if finished_ids:
        _enqueue_finalize(finished_ids)
    return changed


def _claim(ids: Sequence[int], *, stale_before, sweep: bool = False) -> list[Run]:
    """Claim the stale, unfinished runs among `ids`; return the claimed rows, fresh.

    Each chunk is stamped with a timestamp of its own, and the rows carrying exactly that stamp
    are ours. (Another process would have to claim the same run in the same microsecond to be
    confused, and then the cost is one extra list call, not a wrong state.)

    With `sweep` (all `ids` are of one workflow, so one list call serves them all), a chunk that
    claimed anything also takes its fresher runs along under the same stamp. Without it, the
    runs' stamps drift apart across the interval and nearly every poll finds one of them due,
    each making its own list call; swept, they stay in step: one call per interval.
    """
    claimed: list[Run] = []
    for start in range(0, len(ids), CLAIM_CHUNK):
        chunk = ids[start : start + CLAIM_CHUNK]
        stamp = timezone.now()
        unfinished = Run.objects.filter(pk__in=chunk, cyberdesk_id__isnull=False).exclude(
            status__in=TERMINAL_STATUSES
        )
        updated = unfinished.filter(
            Q(synced_at__isnull=True) | Q(synced_at__lte=stale_before)
        ).update(synced_at=stamp)
        if updated:
            if sweep:
                unfinished.exclude(synced_at=stamp).update(synced_at=stamp)
            claimed.extend(Run.objects.filter(pk__in=chunk, synced_at=stamp))
    return claimed


def _list_upstream(client, workflow_id, runs: list[Run]) -> dict:
    """The upstream runs among `runs`, from list calls newest first, paged until all are seen
    (first page sized to the runs wanted, then doubling; see `LIST_FIRST_PAGE_MIN`)."""
    wanted = {run.cyberdesk_id for run in runs}
    created_at_from = min(run.created_at for run in runs) - CREATED_AT_MARGIN
    found: dict = {}
    skip = 0
    limit = min(LIST_PAGE_SIZE, max(LIST_FIRST_PAGE_MIN, 2 * len(wanted)))
    for _ in range(LIST_MAX_PAGES):
        try:
            page = client.list_runs(
                workflow_id=workflow_id,
                created_at_from=created_at_from,
                fields=LIST_FIELDS,
                # Stable under paging: new runs land on top and only push items down a page.
                sort_mode="created_at_desc",
                skip=skip,
                limit=limit,
            )
        except errors.CyberdeskError as exc:
            logger.warning("Workflow %s: listing runs failed: %s", workflow_id, exc)
            api_outage_note(exc)
            break
        api_outage_clear()
        for item in page.items:
            if item.id in wanted:
                found[item.id] = item
        skip += len(page.items)
        if len(found) == len(wanted) or not page.items or skip >= page.total:
            break
        limit = min(LIST_PAGE_SIZE, 2 * limit)
    return found


def run_cost_fetch(run: Run) -> None:
    """Record what a finished run cost (one call, once). Errors leave the cost unknown: the
    API only reports costs with the organisation's cost-visibility feature on."""
    if run.cyberdesk_id is None or run.cost_usd is not None:
        return
    try:
        costs = get_client().get_run_llm_costs(run.cyberdesk_id)
    except errors.CyberdeskError as exc:
        logger.info("Run %s: no cost: %s", run.pk, exc)
        return
    if costs.total_cost_usd is None:
        return
    try:
        cost = Decimal(str(costs.total_cost_usd)).quantize(Decimal("0.000001"))
    except InvalidOperation:
        logger.warning("Run %s: unreadable cost %r", run.pk, costs.total_cost_usd)
        return
    with transaction.atomic():
        recorded = Run.objects.filter(pk=run.pk, cost_usd__isnull=True).update(cost_usd=cost)
        if recorded:  # not already recorded by a racing fetch: count it once, with the write
            counted = rollups_snapshot(run)
            run.cost_usd = cost
            rollups_record(run, counted)
    run.cost_usd = cost


def run_attachments_fetch(run: Run) -> None:
    """Store a finished run's attachments (one listing, once per attempt), so its page lists
    them from the database. Errors leave them unfetched (`None`): the page loads them later."""
    if run.cyberdesk_id is None or not run.is_finished or run.attachments is not None:
        return
    try:
        attachments = get_client().list_run_attachments(run.cyberdesk_id)
    except errors.CyberdeskError as exc:
        logger.info("Run %s: attachments not fetched: %s", run.pk, exc)
        api_outage_note(exc)
        return
    stored = [attachment_to_json(attachment) for attachment in attachments]
    # Only for the attempt we listed: a retry in between starts a new, unfetched one.
    try:
        with transaction.atomic():
            Run.objects.filter(pk=run.pk, attempt=run.attempt, attachments__isnull=True).update(
                attachments=stored
            )
    except DatabaseError as exc:
        # Storing the list only saves the next viewer a call; a page must not fail for it (a
        # busy SQLite, whose shared-cache test database refuses a second writer at once).
        logger.info("Run %s: attachments listed but not stored: %s", run.pk, exc)
    run.attachments = stored


def attachment_to_json(attachment: types.Attachment) -> dict:
    """An attachment as stored in `Run.attachments`: the API's own shape, so that
    `types.Attachment.from_api` reads it back."""
    return {
        "id": str(attachment.id),
        "run_id": str(attachment.run_id),
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "attachment_type": attachment.attachment_type,
        "size_bytes": attachment.size_bytes,
        "created_at": attachment.created_at.isoformat(),
    }


def run_finalize(run: Run) -> None:
    """Fill in what a finished run's status news left out: the message history (list calls and
    sparse webhooks do not carry it), the cost and the attachments."""
    if run.cyberdesk_id is None or not run.is_finished:
        return
    if run.message_history is None:
        try:
            _apply(run, get_client().get_run(run.cyberdesk_id))
        except errors.CyberdeskError as exc:
            logger.warning("Run %s: fetching the finished run failed: %s", run.pk, exc)
    run_cost_fetch(run)
    run_attachments_fetch(run)


def _enqueue_finalize(run_ids: list[int]) -> None:
    from launcher.tasks import run_finalize_task  # tasks import services, not the reverse

    def enqueue():
        for run_id in run_ids:
            run_finalize_task.enqueue(run_id)

    transaction.on_commit(enqueue)
