"""`run_complete` webhooks, sent the way Cyberdesk's Svix endpoint sends them (spec §6).

An event is an outbox row written in the same transaction as the run's terminal transition;
the driver (tasks.py / `sandbox_tick`) sends due rows. Sending never happens inside the API
request that finished the run: the receiver may be this very server.
"""

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.utils import timezone
from svix.webhooks import Webhook

from launcher.sandbox.models import DeliveryStatus, Run, WebhookDelivery
from launcher.sandbox.payloads import iso, run_json

logger = logging.getLogger(__name__)

# Svix's default schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (seconds).
DEFAULT_RETRY_SECONDS = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
# A claimed attempt is retried after this long if the sender died mid-attempt.
ATTEMPT_LEASE = timedelta(seconds=60)
DELIVERY_TIMEOUT_SECONDS = 15


def retry_schedule() -> tuple[float, ...]:
    return tuple(getattr(settings, "SANDBOX_WEBHOOK_RETRY_SECONDS", DEFAULT_RETRY_SECONDS))


def webhooks_configured() -> bool:
    return bool(settings.SANDBOX_WEBHOOK_URL and settings.CYBERDESK_WEBHOOK_SECRET)


def webhook_event_create(run: Run, *, occurred_at: datetime) -> WebhookDelivery | None:
    """Queue a `run_complete` event for a run that just finished, if its workflow wants one.

    The body is frozen now, so every retry sends the same bytes under the same svix-id."""
    if not run.workflow.is_webhooks_enabled or not webhooks_configured():
        return None
    event_id = uuid.uuid4()
    payload = {
        "event_id": str(event_id),
        "event_type": "run_complete",
        "occurred_at": iso(occurred_at),
        "run": run_json(run),
    }
    return WebhookDelivery.objects.create(
        message_id=f"msg_{event_id.hex}",
        run=run,
        payload=json.dumps(payload),
        url=settings.SANDBOX_WEBHOOK_URL,
        next_attempt_at=occurred_at,
    )


def webhook_headers(*, message_id: str, payload: str, at: datetime) -> dict[str, str]:
    """Svix headers: the signature covers "{id}.{timestamp}.{body}" with the whsec_ secret."""
    timestamp = datetime.fromtimestamp(int(at.timestamp()), tz=UTC)
    signature = Webhook(settings.CYBERDESK_WEBHOOK_SECRET).sign(message_id, timestamp, payload)
    return {
        "content-type": "application/json",
        "user-agent": "Svix-Webhooks/1.73 (sandbox; +https://docs.svix.com/receiving/introduction)",
        "svix-id": message_id,
        "svix-timestamp": str(int(timestamp.timestamp())),
        "svix-signature": signature,
    }


def webhooks_deliver_due(*, client: httpx.Client | None = None) -> int:
    """Send every due event once; returns how many were delivered."""
    now = timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        ).values_list("pk", "attempts")
    )
    if not due:
        return 0
    own_client = client is None
    client = client or httpx.Client(timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False)
    delivered = 0
    try:
        for delivery_id, attempts in due:
            # Claim the attempt (compare-and-set), so two drivers never send it twice at once.
            claimed = WebhookDelivery.objects.filter(
                pk=delivery_id, status=DeliveryStatus.PENDING, attempts=attempts
            ).update(next_attempt_at=now + ATTEMPT_LEASE)
            if claimed:
                delivered += _attempt(WebhookDelivery.objects.get(pk=delivery_id), client)
    finally:
        if own_client:
            client.close()
    return delivered


def _attempt(delivery: WebhookDelivery, client: httpx.Client) -> bool:
    sent_at = timezone.now()
    headers = webhook_headers(message_id=delivery.message_id, payload=delivery.payload, at=sent_at)
    status_code, error = None, ""
    try:
        response = client.post(delivery.url, content=delivery.payload.encode(), headers=headers)
        status_code = response.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    delivery.attempts += 1
    delivery.last_status_code = status_code
    ok = status_code is not None and 200 <= status_code < 300
    if ok:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = sent_at
        delivery.next_attempt_at = None
        delivery.last_error = ""
    else:
        delivery.last_error = error or f"HTTP {status_code}"
        schedule = retry_schedule()
        if delivery.attempts < len(schedule):
            delivery.next_attempt_at = sent_at + timedelta(seconds=schedule[delivery.attempts])
        else:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
        logger.warning(
            "sandbox webhook %s attempt %s to %s failed: %s",
            delivery.message_id,
            delivery.attempts,
            delivery.url,
            delivery.last_error,
        )
    delivery.save()
    return ok


def next_delivery_due() -> datetime | None:
    return (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
