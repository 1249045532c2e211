"""`run_complete` webhooks: Svix-signed, sent by the driver (not the request), retried with
backoff, delivered to a real HTTP receiver."""

import json
from datetime import UTC, datetime

import pytest
from django.test import Client
from openapi_client.cyberdesk_cloud_client.models.run_completed_event import RunCompletedEvent
from svix.webhooks import Webhook

from launcher.models import WebhookEvent
from launcher.sandbox import seed
from launcher.sandbox.models import DeliveryStatus, WebhookDelivery
from launcher.sandbox.tasks import sandbox_tick

pytestmark = pytest.mark.django_db(transaction=True)

LONG_ENOUGH = 120
ELIGIBILITY_INPUTS = {"patient_name": "Ada", "date_of_birth": "1815-12-10", "payer": "Aetna"}


def _finished_run(api, clock, workflow=seed.WORKFLOW_ELIGIBILITY, **body):
    run = api.post(
        "runs",
        {
            "workflow_id": str(workflow),
            "input_values": ELIGIBILITY_INPUTS,
            "sensitive_input_values": {"portal_password": "hunter2"},
            **body,
        },
    ).json()
    clock.shift(LONG_ENOUGH)
    return run


def test_a_finished_run_is_announced_with_a_signed_run_complete_event(
    api, clock, webhook_receiver, settings
):
    run = _finished_run(api, clock)

    sandbox_tick()

    [request] = webhook_receiver.requests
    headers = {key.lower(): value for key, value in request["headers"].items()}
    payload = Webhook(settings.CYBERDESK_WEBHOOK_SECRET).verify(request["body"], headers)
    assert payload["event_type"] == "run_complete"
    assert payload["run"]["id"] == run["id"]
    assert payload["run"]["status"] == "success"
    event = RunCompletedEvent.from_dict(json.loads(request["body"]))
    assert str(event.run.id) == run["id"]
    assert "hunter2" not in request["body"].decode()
    assert headers["svix-id"].startswith("msg_")


def test_launcher_takes_the_delivery_only_under_the_secret_it_was_signed_with(
    api, clock, webhook_receiver, settings
):
    """The sandbox's delivery, replayed into Launcher's receiver: refused (401, nothing stored)
    when Launcher holds another secret, applied with the shared one. An unsigned delivery
    would get neither answer (400: no signature headers)."""
    _finished_run(api, clock)
    sandbox_tick()
    [request] = webhook_receiver.requests
    signature = {
        key.lower(): value
        for key, value in request["headers"].items()
        if key.lower().startswith("svix-")
    }
    assert set(signature) == {"svix-id", "svix-timestamp", "svix-signature"}
    receiver = Client(enforce_csrf_checks=True)

    def deliver():
        return receiver.post(
            "/webhooks/cyberdesk/",
            request["body"],
            content_type="application/json",
            headers=signature,
        )

    shared = settings.CYBERDESK_WEBHOOK_SECRET
    settings.CYBERDESK_WEBHOOK_SECRET = "whsec_" + "A" * 32
    assert deliver().status_code == 401
    assert not WebhookEvent.objects.exists()

    settings.CYBERDESK_WEBHOOK_SECRET = shared
    answer = deliver()
    assert (answer.status_code, answer.json()) == (200, {"status": "unknown run"})
    assert WebhookEvent.objects.get().event_type == "run_complete"


def test_nothing_is_sent_inside_the_request_that_finishes_the_run(api, clock, webhook_receiver):
    run = _finished_run(api, clock)

    api.get(f"runs/{run['id']}")  # the read that moves it to success

    assert webhook_receiver.requests == []
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING


def test_a_cancelled_run_is_announced_too(api, clock, webhook_receiver):
    run = api.post(
        "runs", {"workflow_id": str(seed.WORKFLOW_ELIGIBILITY), "input_values": ELIGIBILITY_INPUTS}
    ).json()
    api.patch(f"runs/{run['id']}", {"status": "cancelled"})

    sandbox_tick()

    [request] = webhook_receiver.requests
    assert json.loads(request["body"])["run"]["status"] == "cancelled"


def test_no_event_when_the_workflow_has_webhooks_off(api, clock, webhook_receiver):
    _finished_run(
        api, clock, workflow=seed.WORKFLOW_HELLO, input_values=None, sensitive_input_values=None
    )

    sandbox_tick()

    assert webhook_receiver.requests == []
    assert not WebhookDelivery.objects.exists()


def test_a_failed_delivery_is_retried_with_backoff_same_id_fresh_timestamp(
    api, clock, webhook_receiver, settings
):
    webhook_receiver.answers = [500, 503]
    _finished_run(api, clock)

    sandbox_tick()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.status, delivery.last_status_code) == (1, "pending", 500)
    clock.shift(4)
    sandbox_tick()
    assert len(webhook_receiver.requests) == 1, "the second attempt waits 5 s"
    clock.shift(2)
    sandbox_tick()
    assert len(webhook_receiver.requests) == 2
    clock.shift(299)
    sandbox_tick()
    assert len(webhook_receiver.requests) == 2, "the third attempt waits 5 min"
    clock.shift(2)
    sandbox_tick()

    assert len(webhook_receiver.requests) == 3
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3
    ids = {r["headers"]["svix-id"] for r in webhook_receiver.requests}
    stamps = [int(r["headers"]["svix-timestamp"]) for r in webhook_receiver.requests]
    assert len(ids) == 1
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    signer = Webhook(settings.CYBERDESK_WEBHOOK_SECRET)
    for request, stamp in zip(webhook_receiver.requests, stamps, strict=True):
        # Each attempt is signed for its own timestamp.
        expected = signer.sign(
            request["headers"]["svix-id"],
            datetime.fromtimestamp(stamp, UTC),
            request["body"].decode(),
        )
        assert request["headers"]["svix-signature"] == expected


def test_a_delivery_gives_up_after_the_schedule(api, clock, webhook_receiver, settings):
    settings.SANDBOX_WEBHOOK_RETRY_SECONDS = [0, 1]
    webhook_receiver.answers = [500, 500, 500]
    _finished_run(api, clock)

    sandbox_tick()
    clock.shift(2)
    sandbox_tick()
    clock.shift(60)
    sandbox_tick()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert len(webhook_receiver.requests) == 2


def test_an_unreachable_receiver_counts_as_a_failed_attempt(api, clock, settings):
    settings.SANDBOX_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    _finished_run(api, clock)

    sandbox_tick()

    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 1 and delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error
