"""`Idempotency-Key` on writes: replay, conflicts, in-flight duplicates, expiry."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from launcher.sandbox import seed
from launcher.sandbox.idempotency import request_fingerprint
from launcher.sandbox.models import IdempotencyRecord, Run

pytestmark = pytest.mark.django_db

BODY = {"workflow_id": str(seed.WORKFLOW_HELLO)}


def test_the_same_key_and_body_replays_the_first_response(api):
    first = api.post("runs", BODY, **{"Idempotency-Key": "key-1"})
    second = api.post("runs", BODY, **{"Idempotency-Key": "key-1"})

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotency-Status"] == "replayed"
    assert "Idempotency-Status" not in first
    assert Run.objects.count() == 1


def test_key_order_in_the_body_does_not_make_a_different_request(api):
    body = {"workflow_id": str(seed.WORKFLOW_HELLO), "is_priority": True}
    reordered = json.dumps({"is_priority": True, "workflow_id": str(seed.WORKFLOW_HELLO)})

    first = api.post("runs", body, **{"Idempotency-Key": "key-order"})
    second = api.post("runs", reordered, **{"Idempotency-Key": "key-order"})

    assert second.json()["id"] == first.json()["id"]


def test_an_error_response_is_replayed_too(api):
    body = {"workflow_id": str(seed.WORKFLOW_HELLO), "main_agent_model_id": str(seed.seed_id("x"))}

    first = api.post("runs", body, **{"Idempotency-Key": "key-400"})
    second = api.post("runs", body, **{"Idempotency-Key": "key-400"})

    assert first.status_code == second.status_code == 400
    assert second.json() == first.json()


def test_the_same_key_with_a_different_body_is_refused(api):
    api.post("runs", BODY, **{"Idempotency-Key": "key-2"})

    response = api.post("runs", {**BODY, "is_priority": True}, **{"Idempotency-Key": "key-2"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert Run.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_refused(api):
    run = api.post("runs", BODY, **{"Idempotency-Key": "key-3"}).json()

    response = api.patch(
        f"runs/{run['id']}", {"status": "cancelled"}, **{"Idempotency-Key": "key-3"}
    )

    assert response.status_code == 422


def test_a_duplicate_while_the_first_is_in_flight_gets_409_in_progress(api, rf):
    in_flight = rf.post("/sandbox/v1/runs", data=json.dumps(BODY), content_type="application/json")
    IdempotencyRecord.objects.create(
        key="key-4", request_fingerprint=request_fingerprint(in_flight)
    )

    response = api.post("runs", BODY, **{"Idempotency-Key": "key-4"})

    assert response.status_code == 409
    assert response["Idempotency-Status"] == "in_progress"
    assert isinstance(response.json()["detail"], str)


def test_an_abandoned_in_flight_key_is_taken_over(api, rf):
    in_flight = rf.post("/sandbox/v1/runs", data=json.dumps(BODY), content_type="application/json")
    IdempotencyRecord.objects.create(
        key="key-5",
        request_fingerprint=request_fingerprint(in_flight),
        created_at=timezone.now() - timedelta(minutes=5),
    )

    response = api.post("runs", BODY, **{"Idempotency-Key": "key-5"})

    assert response.status_code == 201


def test_keys_are_kept_a_day_then_forgotten(api, clock):
    first = api.post("runs", BODY, **{"Idempotency-Key": "key-6"})

    clock.shift(timedelta(hours=23, minutes=59))
    replay = api.post("runs", BODY, **{"Idempotency-Key": "key-6"})
    clock.shift(timedelta(minutes=2))
    fresh = api.post("runs", BODY, **{"Idempotency-Key": "key-6"})

    assert replay.json()["id"] == first.json()["id"]
    assert fresh.json()["id"] != first.json()["id"]
    assert "Idempotency-Status" not in fresh


def test_writes_without_a_key_are_not_deduplicated(api):
    api.post("runs", BODY)
    api.post("runs", BODY)

    assert Run.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()


def test_the_stored_fingerprint_does_not_reveal_the_body(api):
    api.post("runs", BODY, **{"Idempotency-Key": "key-7"})

    record = IdempotencyRecord.objects.get(key="key-7")
    assert str(seed.WORKFLOW_HELLO) not in record.request_fingerprint
    assert len(record.request_fingerprint) == 64
