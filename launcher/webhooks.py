"""`POST /webhooks/cyberdesk/` — Cyberdesk's Svix-signed `run_complete` events.

Order of work, and why:
1. Verify the Svix signature over the raw body before parsing it (spec §6): a missing,
   malformed or wrong signature, or a timestamp more than five minutes off, is refused and
   nothing is stored. With no secret configured every delivery is refused: unsigned news is
   never trusted.
2. Record the event id (unique) in the same transaction as the state change, so a redelivery
   finds the id taken and changes nothing.
3. Apply the run forward-only (`run_apply_upstream`). A run we do not know is recorded and
   answered 200, otherwise Svix would redeliver it for days.

The request never calls the API (Svix wants an answer quickly); fetching the cost or the full
run is left to the worker.
"""

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from launcher.cyberdesk import errors, types
from launcher.models import TERMINAL_STATUSES, Run, RunEvent, WebhookEvent
from launcher.parsing import ParseError, json_parse
from launcher.services import run_sync
from launcher.services.run_events import run_event_record

logger = logging.getLogger(__name__)

RUN_COMPLETE = "run_complete"
_EVENT_ID_MAX = WebhookEvent._meta.get_field("event_id").max_length
# Svix sends svix-*; the Standard Webhooks names are accepted when those are absent.
_HEADER_SETS = (
    ("svix-id", "svix-timestamp", "svix-signature"),
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
)


@csrf_exempt  # signed by Svix, not tied to a browser session
@login_not_required
@require_POST
def cyberdesk_webhook(request: HttpRequest) -> JsonResponse:
    return webhook_receive(request)


def webhook_receive(request: HttpRequest) -> JsonResponse:
    """Verify, parse and record one delivery; the answer Svix gets. (Apart from the view so
    mutation testing, which leaves decorated functions alone, reaches the verification.)"""
    secret = settings.CYBERDESK_WEBHOOK_SECRET
    if not secret:
        logger.error("Webhook refused: CYBERDESK_WEBHOOK_SECRET is not set")
        return _answer(503, "webhooks are not configured")
    try:
        verifier = Webhook(secret)
    except Exception:  # an unreadable secret is a configuration error, never a pass
        logger.exception("Webhook refused: CYBERDESK_WEBHOOK_SECRET is not a valid whsec_ secret")
        return _answer(503, "webhooks are not configured")

    headers = _signature_headers(request)
    if headers is None:
        return _answer(400, "missing signature headers")
    try:
        # Svix's verifier is a thin wrapper of this one (Standard Webhooks), which can check
        # the signature without parsing: the body is then read by the launcher's own parser
        # (depth and number limits), not by a bare json.loads that a signed body of 1,000 × "["
        # turned into a RecursionError.
        verifier.verify(request.body, _standard_names(headers), json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:
        # ValueError: a malformed signature list, bad base64, a body that is not UTF-8.
        logger.warning("Webhook refused: %s", exc)
        return _answer(401, "invalid signature")
    try:
        payload = json_parse(request.body, replace_surrogates=True)
    except ParseError as exc:
        return _answer(400, f"body is not readable JSON: {exc.msg}")

    if not isinstance(payload, dict):
        return _answer(400, "body is not a JSON object")
    # PostgreSQL stores U+0000 in neither text nor jsonb (an agent's output may hold one).
    payload = types.storable(payload)
    event_id = str(payload.get("event_id") or headers["svix-id"])
    # Cyberdesk sends only run_complete; an event without a type is one if it carries a run.
    event_type = str(payload.get("event_type") or (RUN_COMPLETE if "run" in payload else "unknown"))
    event_type = event_type[:50]
    if len(event_id) > _EVENT_ID_MAX:
        return _answer(400, "event id too long")
    upstream = None
    if event_type == RUN_COMPLETE:
        try:
            upstream = types.Run.from_api(payload.get("run"))
        except errors.InvalidResponse as exc:
            return _answer(400, f"unreadable run: {exc}")

    outcome = webhook_event_record(
        event_id=event_id, event_type=event_type, payload=payload, upstream=upstream
    )
    return _answer(200, outcome)


def webhook_event_record(
    *, event_id: str, event_type: str, payload: dict, upstream: types.Run | None
) -> str:
    """Record a verified event once and apply it; return what happened, for the answer.

    The insert of the event id and the run update share one transaction: either both happen
    or neither, so a redelivery after a crash is applied, and a redelivery after success is not.
    """
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                event_id=event_id,
                event_type=event_type,
                cyberdesk_run_id=upstream.id if upstream else None,
                payload=payload,
            )
            if upstream is None:
                return "ignored"
            run = Run.objects.select_for_update().filter(cyberdesk_id=upstream.id).first()
            if run is None:
                logger.info("Webhook %s: run %s is not one of ours", event_id, upstream.id)
                return "unknown run"
            event.run = run
            if run.attempt > 1 and not run.is_finished and upstream.status in TERMINAL_STATUSES:
                # The launcher retried this run in place (same id): a late "finished" event may
                # belong to the previous attempt, so ask the API which one is current.
                event.save(update_fields=["run"])
                _history(run, event_id, upstream, "verifying")
                _on_commit_enqueue("run_refresh_task", run.pk)
                return "verifying"
            was_finished = run.is_finished
            # Stamped before applying, so the history reads "received", then "status changed".
            received_at = timezone.now()
            event.applied = run_sync.run_apply_upstream(
                run, upstream, source=RunEvent.Source.WEBHOOK
            )
            event.save(update_fields=["run", "applied"])
            outcome = "applied" if event.applied else "no change"
            _history(run, event_id, upstream, outcome, at=received_at)
            if run.is_finished and not was_finished:
                _on_commit_enqueue("run_finalize_task", run.pk)
            return outcome
    except IntegrityError:
        # Redelivered (the same event id is already recorded): nothing changes, but the
        # delivery is part of the run's history.
        run = Run.objects.filter(cyberdesk_id=upstream.id).first() if upstream else None
        if run is not None:
            _history(run, event_id, upstream, "duplicate")
        return "duplicate"


def _history(run: Run, event_id: str, upstream: types.Run, outcome: str, at=None) -> RunEvent:
    return run_event_record(
        run=run,
        at=at,
        kind=RunEvent.Kind.WEBHOOK,
        source=RunEvent.Source.WEBHOOK,
        detail={"event_id": event_id[:100], "status": upstream.status, "outcome": outcome},
    )


def _on_commit_enqueue(task_name: str, run_id: int) -> None:
    from launcher import tasks

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.enqueue(run_id))


def _signature_headers(request: HttpRequest) -> dict[str, str] | None:
    """The id/timestamp/signature trio under svix-* names, or None when one is missing."""
    for names in _HEADER_SETS:
        values = [request.headers.get(name, "") for name in names]
        if all(values):
            return dict(zip(_HEADER_SETS[0], values, strict=True))
    return None


def _standard_names(headers: dict[str, str]) -> dict[str, str]:
    return {name.replace("svix-", "webhook-"): value for name, value in headers.items()}


def _answer(status: int, message: str) -> JsonResponse:
    key = "status" if status == 200 else "detail"
    return JsonResponse({key: message}, status=status)
