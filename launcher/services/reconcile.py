"""The reconciler: the runs nobody watches, and launches whose outcome we never heard.

Run every 30 s by the worker (`launcher.tasks.reconcile_runs_task`) and on demand by
`python manage.py reconcile_runs`. Two jobs:

1. Every unfinished, accepted run not refreshed for a minute is refreshed — in list calls, one
   per workflow (`runs_refresh_many`), never one call per run.
2. Every run whose launch outcome is unknown (sent, no answer) — and every single run still
   queued a couple of minutes after it was stored (the process died before sending it) — is
   settled:

   - Normally by sending it again with its own idempotency key and the same body. That *is*
     the lookup: if the API accepted the first send, it answers the replay with the original
     run; if it never got it, this send creates it. Either way exactly one upstream run exists.
   - Except when the run carried sensitive values or files: those are never stored, so the
     request cannot be rebuilt (and a replay with a different body would be refused). Such a
     run is looked for in the workflow's run list instead (same inputs, model, prompt,
     sensitive keys and file count, created around the same time, not already someone
     else's). Found → accepted; not there after `SECRET_LOOKUP_GRACE` → rejected with a
     message asking the operator to launch it again.
   - Runs older than `IDEMPOTENCY_REPLAY_WINDOW` (a setting, default 1 h) are also only looked
     for, never re-sent: the docs do not say how long the API keeps an idempotency key, and
     after it forgets one a re-send would create a second run. The lookup lists the workflow's
     runs created from the launch up to the end of the window (the last moment a re-send
     could have created it) and matches model, prompt hash and inputs; not found after
     `SECRET_LOOKUP_GRACE` → rejected, with a message asking to launch it again.

   Queued runs that belong to a batch are the batch worker's, not ours.

Each run is claimed with the same compare-and-set on `synced_at` the status refresh uses, so
two reconcilers (the worker and a manual command) never work on the same run at once.
"""

import hashlib
import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from launcher.cyberdesk import errors, get_client, types
from launcher.models import TERMINAL_STATUSES, PromptMode, Run, RunEvent, RunStatus, Submission
from launcher.services import run_sync
from launcher.services.canary import canaries_evaluate
from launcher.services.run_events import run_event_record

logger = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=1)
QUEUED_GRACE = timedelta(minutes=2)  # a launch request has long finished (or died) by then
SECRET_LOOKUP_GRACE = timedelta(minutes=5)  # the API has long stored a run it accepted by then
LOOKUP_WINDOW = timedelta(minutes=30)  # slack after the last possible send, for the lookup
REFRESH_CHUNK = 1000
SETTLE_LIMIT = 100  # per pass; the next pass takes the rest
# Where the API's 422 puts "this Idempotency-Key was used with another body".
KEY_REUSED_FIELD = "header.Idempotency-Key"
NOT_RESENDABLE = (
    "Launcher never heard whether Cyberdesk accepted this run, and it is not there. Its "
    "sensitive values or files are not kept, so it cannot be sent again: launch it again."
)
TOO_OLD_TO_RESEND = (
    "Launcher never heard whether Cyberdesk accepted this run, and it is not there. It is "
    "older than the idempotency replay window, so sending it again could start it twice: "
    "launch it again."
)


def replay_window() -> timedelta:
    """`settings.IDEMPOTENCY_REPLAY_WINDOW` (a timedelta, or seconds): how long after its launch
    a run may be re-sent with its idempotency key."""
    value = getattr(settings, "IDEMPOTENCY_REPLAY_WINDOW", timedelta(hours=1))
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


@dataclass
class ReconcileReport:
    refreshed: int = 0  # unfinished runs checked against the API
    changed: int = 0  # of those, runs whose state changed
    resubmitted: int = 0  # unknown/queued runs sent again with their idempotency key
    found: int = 0  # unknown runs found upstream by looking
    rejected: int = 0  # unknown runs settled as rejected
    unsettled: int = 0  # still unknown (the API did not answer); tried again next pass

    def as_dict(self) -> dict:
        return asdict(self)


def runs_reconcile() -> ReconcileReport:
    report = ReconcileReport()
    _refresh_stale(report)
    canaries_evaluate()  # after the refresh: each canary looks at its arms' newest outcomes
    _settle_unsubmitted(report)
    counts = report.as_dict()
    # An idle pass (every 30 s) says nothing on the console; a pass that did something does.
    logger.log(
        logging.INFO if any(counts.values()) else logging.DEBUG, "Reconciled runs: %s", counts
    )
    return report


def _refresh_stale(report: ReconcileReport) -> None:
    stale_before = timezone.now() - STALE_AFTER
    stale_ids = list(
        Run.objects.filter(submission=Submission.ACCEPTED, cyberdesk_id__isnull=False)
        .exclude(status__in=TERMINAL_STATUSES)
        .filter(Q(synced_at__isnull=True) | Q(synced_at__lte=stale_before))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(stale_ids), REFRESH_CHUNK):
        runs = list(Run.objects.filter(pk__in=stale_ids[start : start + REFRESH_CHUNK]))
        report.refreshed += len(runs)
        report.changed += run_sync.runs_refresh_many(
            runs, stale_after=STALE_AFTER, source="reconciler"
        )


def _settle_unsubmitted(report: ReconcileReport) -> None:
    now = timezone.now()
    runs = (
        Run.objects.filter(
            Q(submission=Submission.UNKNOWN)
            | Q(
                submission=Submission.QUEUED, batch__isnull=True, created_at__lte=now - QUEUED_GRACE
            )
        )
        .filter(Q(synced_at__isnull=True) | Q(synced_at__lte=now - STALE_AFTER))
        .order_by("created_at", "pk")[:SETTLE_LIMIT]
    )
    for run in runs:
        if not _claim(run, now=now):
            continue  # another reconciler has it
        outcome = run_settle(run)
        setattr(report, outcome, getattr(report, outcome) + 1)


def _claim(run: Run, *, now) -> bool:
    claimed = (
        Run.objects.filter(pk=run.pk, submission__in=[Submission.UNKNOWN, Submission.QUEUED])
        .filter(Q(synced_at__isnull=True) | Q(synced_at__lte=now - STALE_AFTER))
        .update(synced_at=now)
    )
    return bool(claimed)


def run_settle(run: Run) -> str:
    """Settle one run whose launch outcome is unknown; return the `ReconcileReport` field
    that counts the outcome."""
    age = timezone.now() - run.created_at
    resendable = not (run.sensitive_input_keys or run.file_input_names)
    if resendable and age < replay_window():
        return _resend(run)

    try:
        upstream = _find_upstream(run)
    except errors.CyberdeskError as exc:
        logger.warning("Run %s: looking for it upstream failed: %s", run.pk, exc)
        return "unsettled"
    if upstream is not None:
        run_sync.run_apply_upstream(run, upstream, source="reconciler")
        return "found"
    if age < SECRET_LOOKUP_GRACE:
        return "unsettled"
    message = TOO_OLD_TO_RESEND if resendable else NOT_RESENDABLE
    with transaction.atomic():
        rejected = Run.objects.filter(
            pk=run.pk, submission__in=[Submission.UNKNOWN, Submission.QUEUED]
        ).update(
            submission=Submission.REJECTED, status=RunStatus.REJECTED, submission_error=message
        )
        if rejected:
            _history_rejected(run, message)
    logger.warning("Run %s: outcome unknown and not found upstream; marked rejected", run.pk)
    return "rejected" if rejected else "unsettled"


def _resend(run: Run) -> str:
    """Send the run again with its own idempotency key and the same body.

    Only a conclusive answer changes the run: the run itself (accepted — whether this send
    created it or the API replayed the first answer) or a refusal of its values (rejected —
    the first send got the same refusal). Anything else — no connection, throttled, a key
    problem, a timeout again — says nothing about the first send, so the run stays as it is
    and the next pass tries again. (`run_submit` rejects on some of those, which is right for
    a first send but not for this one.)
    """
    from launcher.services.runs import run_request  # runs.py imports run_sync, not this

    Run.objects.filter(pk=run.pk).update(submission_attempts=F("submission_attempts") + 1)
    try:
        upstream = get_client().create_run(
            idempotency_key=str(run.idempotency_key), **run_request(run)
        )
    except errors.InvalidRequest as exc:
        if KEY_REUSED_FIELD in exc.field_errors:
            # Not a refusal of the run's values: the API already has this key, with a body that
            # differs from this one, so the first send did arrive. Look for the run instead.
            logger.error("Run %s: the re-send's body differs from the first send's", run.pk)
            return _look_up(run)
        message = f"{exc} Nothing was started; correct the values and launch again."[:2000]
        with transaction.atomic():
            rejected = (
                Run.objects.filter(pk=run.pk)
                .exclude(submission=Submission.ACCEPTED)
                .update(
                    submission=Submission.REJECTED,
                    status=RunStatus.REJECTED,
                    submission_error=message,
                )
            )
            if rejected:
                _history_rejected(run, message)
        logger.warning("Run %s: re-send refused: %s", run.pk, exc)
        return "rejected"
    except errors.CyberdeskError as exc:
        logger.warning("Run %s: re-send got no answer (%s); trying again later", run.pk, exc)
        return "unsettled"
    run_sync.run_apply_upstream(run, upstream, source="reconciler")
    logger.info("Run %s: settled by re-sending; upstream run %s", run.pk, upstream.id)
    return "resubmitted"


def _look_up(run: Run) -> str:
    """Settle a run the API has under its key by finding it; never reject it from here."""
    try:
        upstream = _find_upstream(run)
    except errors.CyberdeskError as exc:
        logger.warning("Run %s: looking for it upstream failed: %s", run.pk, exc)
        return "unsettled"
    if upstream is None:
        return "unsettled"
    run_sync.run_apply_upstream(run, upstream)
    return "found"


def _find_upstream(run: Run) -> types.Run | None:
    """The upstream run that is this launch, found by what it carried (see the module doc)."""
    client = get_client()
    candidates: list[types.Run] = []
    skip = 0
    while True:
        page = client.list_runs(
            workflow_id=run.workflow_id,
            created_at_from=run.created_at - run_sync.CREATED_AT_MARGIN,
            # A re-send within the window may have created it as late as its end.
            created_at_to=run.created_at + replay_window() + LOOKUP_WINDOW,
            fields=[
                # What identifies the launch, then what a refresh keeps.
                "input_values",
                "main_prompt",
                "model_metadata",
                "sensitive_input_aliases",
                "input_attachment_ids",
                *run_sync.LIST_FIELDS,
            ],
            sort_mode="created_at_desc",
            skip=skip,
            limit=run_sync.LIST_PAGE_SIZE,
        )
        candidates.extend(item for item in page.items if _is_same_launch(run, item))
        skip += len(page.items)
        if not page.items or skip >= page.total or skip >= 10 * run_sync.LIST_PAGE_SIZE:
            break
    taken = set(
        Run.objects.filter(cyberdesk_id__in=[c.id for c in candidates]).values_list(
            "cyberdesk_id", flat=True
        )
    )
    free = [c for c in candidates if c.id not in taken]
    if not free:
        return None
    # Identical launches are interchangeable; take the one created nearest to ours.
    return min(free, key=lambda c: abs(c.created_at - run.created_at))


def _is_same_launch(run: Run, item: types.Run) -> bool:
    if (item.input_values or {}) != (run.input_values or {}):
        return False
    if set(item.sensitive_input_aliases or {}) != set(run.sensitive_input_keys or []):
        return False
    if len(item.input_attachment_ids or []) != len(run.file_input_names or []):
        return False
    if run.model_option_id is not None:
        model = item.model_metadata.main_agent_model_id if item.model_metadata else None
        if model != run.model_option_id:
            return False
    if item.main_prompt is None:
        return run.prompt_mode == PromptMode.STORED
    return hashlib.sha256(item.main_prompt.encode("utf-8")).hexdigest() == run.prompt_sha256


def _history_rejected(run: Run, message: str) -> None:
    run_event_record(
        run=run,
        kind=RunEvent.Kind.REJECTED,
        source=RunEvent.Source.RECONCILER,
        detail={"message": message[:500]},
    )
