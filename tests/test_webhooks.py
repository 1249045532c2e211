"""POST /webhooks/cyberdesk/ — Svix-signed run_complete events (spec §6)."""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django_tasks_db.models import DBTaskResult
from svix.webhooks import Webhook

from launcher import tasks
from launcher.models import Run, RunStatus, Submission, WebhookEvent, Workflow
from tests.fake_cyberdesk import serve
from tests.launch_api import NOW

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_" + base64.b64encode(b"the-key-before-the-rotation-000").decode()
URL = "/webhooks/cyberdesk/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _secret_and_clock(settings):
    settings.CYBERDESK_WEBHOOK_SECRET = SECRET
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def client():
    """Svix is anonymous and sends no CSRF token."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def run():
    workflow = Workflow.objects.create(id=uuid.uuid4(), name="Invoice intake")
    return Run.objects.create(
        workflow=workflow,
        prompt_mode="stored",
        cyberdesk_id=uuid.uuid4(),
        submission=Submission.ACCEPTED,
        status=RunStatus.RUNNING,
        started_at=NOW - timedelta(minutes=3),
    )


def event_body(run_id, *, status="success", event_id=None, **run_fields) -> bytes:
    upstream = {
        "id": str(run_id),
        "workflow_id": str(uuid.uuid4()),
        "machine_id": None,
        "status": status,
        "created_at": (NOW - timedelta(minutes=5)).isoformat(),
        "started_at": (NOW - timedelta(minutes=3)).isoformat(),
        "ended_at": NOW.isoformat() if status in {"success", "error", "task_failed"} else None,
        "output_data": {"invoice_total": "41.20"} if status == "success" else None,
        "error": [],
        "run_message_history": [{"role": "assistant", "content": "Done."}],
        "sensitive_input_aliases": {"portal_password": "vault://alias"},
        **run_fields,
    }
    payload = {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": "run_complete",
        "occurred_at": NOW.isoformat(),
        "run": upstream,
    }
    return json.dumps(payload).encode()


def signed_headers(body: bytes, *, secret=SECRET, msg_id="msg_1", at=NOW, prefix="svix") -> dict:
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(at.timestamp())),
        f"{prefix}-signature": signature,
    }


def post(client, body: bytes, headers: dict, url=URL):
    return client.post(url, body, content_type="application/json", headers=headers)


# --- Verification ----------------------------------------------------------------------------


def test_a_signature_made_by_hand_per_the_spec_is_what_launcher_accepts(client, run):
    """Spec §6, without the svix library: base64(HMAC-SHA256(key, "id.timestamp.body")). The
    published known answer first (so the hand computation is right), then Launcher's receiver:
    the hand-made signature is applied, the same signature over a changed body is refused."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))

    def by_hand(msg_id, timestamp, body: bytes) -> str:
        signed = f"{msg_id}.{timestamp}.".encode() + body
        return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()

    known = by_hand("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert known == "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    body = event_body(run.cyberdesk_id, status="success")
    timestamp = int(NOW.timestamp())
    headers = {
        "svix-id": "msg_by_hand",
        "svix-timestamp": str(timestamp),
        "svix-signature": "v1," + by_hand("msg_by_hand", timestamp, body),
    }
    tampered = body.replace(b'"success"', b'"error"')

    assert post(client, tampered, headers).status_code == 401
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert post(client, body, headers).json() == {"status": "applied"}
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCESS


def test_it_accepts_the_known_answer_vector_at_its_own_time(client):
    with time_machine.travel(datetime.fromtimestamp(1614265330, tz=UTC), tick=False):
        response = post(
            client,
            b'{"test": 2432232314}',
            {
                "svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "svix-timestamp": "1614265330",
                "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            },
        )

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.event_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"  # no event_id: the svix-id
    assert event.run is None


def test_a_signed_run_complete_finishes_the_run(client, run):
    body = event_body(run.cyberdesk_id, status="success")

    response = post(client, body, signed_headers(body))

    assert response.status_code == 200
    assert response.json() == {"status": "applied"}
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS
    assert run.ended_at == NOW
    assert run.output_data == {"invoice_total": "41.20"}
    assert run.message_history == [{"role": "assistant", "content": "Done."}]
    event = WebhookEvent.objects.get()
    assert (event.run, event.applied, event.cyberdesk_run_id) == (run, True, run.cyberdesk_id)


def test_a_nul_character_in_the_news_is_stored_as_a_replacement_character(client, run):
    """PostgreSQL stores U+0000 in neither text nor jsonb: kept as is, the event could never
    be recorded (a 500 on every redelivery) and the run would never finish here."""
    body = event_body(
        run.cyberdesk_id, output_data={"screen\u0000text": "a\u0000b"}, error=["x\u0000"]
    )

    response = post(client, body, signed_headers(body))

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS
    assert run.output_data == {"screen\ufffdtext": "a\ufffdb"}
    assert run.errors == ["x\ufffd"]
    assert "\x00" not in json.dumps(WebhookEvent.objects.get().payload, ensure_ascii=False)


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_it_refuses_a_delivery_missing_a_signature_header(client, run, missing):
    body = event_body(run.cyberdesk_id)
    headers = signed_headers(body)
    del headers[missing]

    response = post(client, body, headers)

    assert response.status_code == 400
    assert response.json() == {"detail": "missing signature headers"}
    assert not WebhookEvent.objects.exists()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "v1",
        "v1,",
        "v1,not base64!!",
        "garbage",
        "v1,AAAA v1",
        "v2,{valid}",  # a valid digest under a version we do not accept
        "v1," + base64.b64encode(b"x" * 32).decode(),  # well-formed, wrong
        "{other_secret}",  # signed with another secret
    ],
)
def test_it_refuses_a_malformed_or_wrong_signature(client, run, signature):
    body = event_body(run.cyberdesk_id)
    headers = signed_headers(body)
    valid_digest = headers["svix-signature"].removeprefix("v1,")
    headers["svix-signature"] = signature.format(
        valid=valid_digest,
        other_secret=signed_headers(body, secret=OLD_SECRET)["svix-signature"],
    )

    response = post(client, body, headers)

    assert response.status_code in (400, 401)
    assert not WebhookEvent.objects.exists()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_it_refuses_a_body_changed_after_signing(client, run):
    body = event_body(run.cyberdesk_id, status="success")
    headers = signed_headers(body)
    tampered = body.replace(b"41.20", b"99.99")

    response = post(client, tampered, headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid signature"}
    assert not WebhookEvent.objects.exists()


def test_it_refuses_a_signature_for_another_message_id(client, run):
    body = event_body(run.cyberdesk_id)
    headers = signed_headers(body, msg_id="msg_1")
    headers["svix-id"] = "msg_2"

    assert post(client, body, headers).status_code == 401
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=-5, seconds=-1), False),
        (timedelta(minutes=-4, seconds=-59), True),
        (timedelta(minutes=4, seconds=59), True),
        (timedelta(minutes=5, seconds=1), False),
    ],
)
def test_it_accepts_timestamps_only_within_five_minutes(client, run, offset, accepted):
    body = event_body(run.cyberdesk_id)

    response = post(client, body, signed_headers(body, at=NOW + offset))

    assert response.status_code == (200 if accepted else 401)
    assert WebhookEvent.objects.exists() is accepted


@pytest.mark.parametrize("timestamp", ["", "yesterday", "nan", "inf", "1e400", "-1"])
def test_it_refuses_an_unreadable_timestamp(client, run, timestamp):
    body = event_body(run.cyberdesk_id)
    headers = signed_headers(body)
    headers["svix-timestamp"] = timestamp

    assert post(client, body, headers).status_code in (400, 401)
    assert not WebhookEvent.objects.exists()


def test_it_accepts_any_of_several_signatures_during_a_key_rotation(client, run):
    body = event_body(run.cyberdesk_id)
    old = signed_headers(body, secret=OLD_SECRET)["svix-signature"]
    current = signed_headers(body)["svix-signature"]
    headers = signed_headers(body)
    headers["svix-signature"] = f"{old} {current}"

    assert post(client, body, headers).status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_it_accepts_the_standard_webhooks_header_names(client, run):
    body = event_body(run.cyberdesk_id)

    response = post(client, body, signed_headers(body, prefix="webhook"))

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS


def test_it_refuses_everything_when_no_secret_is_configured(client, run, settings):
    settings.CYBERDESK_WEBHOOK_SECRET = ""
    body = event_body(run.cyberdesk_id)

    response = post(client, body, signed_headers(body))

    assert response.status_code == 503
    assert response.json() == {"detail": "webhooks are not configured"}
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("unreadable", ["whsec_not base64!!", "whsec_%%%"])
def test_it_refuses_everything_when_the_secret_is_unreadable(client, run, settings, unreadable):
    """A mistyped secret is a configuration error answered 503 (Svix redelivers once it is
    fixed), never a 200 that would drop the event, and never a pass."""
    settings.CYBERDESK_WEBHOOK_SECRET = unreadable
    body = event_body(run.cyberdesk_id)

    response = post(client, body, signed_headers(body))

    assert response.status_code == 503
    assert response.json() == {"detail": "webhooks are not configured"}
    assert not WebhookEvent.objects.exists()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_signed_body_that_is_not_json_is_a_bad_request(client):
    body = b"not json at all"

    response = post(client, body, signed_headers(body))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("body is not readable JSON: ")
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("body", [b"[]", b'"run_complete"', b"null", b"42"])
def test_a_signed_body_that_is_not_a_json_object_is_a_bad_request(client, body):
    response = post(client, body, signed_headers(body))

    assert response.status_code == 400
    assert response.json() == {"detail": "body is not a JSON object"}
    assert not WebhookEvent.objects.exists()


def test_a_lone_surrogate_in_the_news_is_stored_as_a_replacement_character(client, run):
    """An agent's screen text may hold half a surrogate pair ("\\ud800"), which no UTF-8 page
    or database can hold. Refused, the event would be redelivered for days and the run never
    finish here; it is kept with U+FFFD instead, like a NUL."""
    body = event_body(run.cyberdesk_id, output_data={"screen": "a\ud800b"})
    assert b"\\ud800" in body  # json.dumps escapes it: the wire form Cyberdesk would send

    response = post(client, body, signed_headers(body))

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS
    assert run.output_data == {"screen": "a\ufffdb"}


def test_a_signed_run_complete_without_a_readable_run_is_a_bad_request(client):
    body = json.dumps({"event_id": "e1", "event_type": "run_complete", "run": {"id": 7}}).encode()

    response = post(client, body, signed_headers(body))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("unreadable run: ")
    assert not WebhookEvent.objects.exists()


# --- The route ---------------------------------------------------------------------------------


def test_it_never_redirects_a_delivery_without_the_trailing_slash(client, run):
    body = event_body(run.cyberdesk_id)

    response = post(client, body, signed_headers(body), url="/webhooks/cyberdesk")

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS


def test_it_only_takes_post(client):
    assert client.get(URL).status_code == 405


# --- Recording and applying --------------------------------------------------------------------


def test_a_redelivered_event_answers_200_and_changes_nothing(client, run):
    event_id = str(uuid.uuid4())
    first = event_body(run.cyberdesk_id, status="success", event_id=event_id)
    assert post(client, first, signed_headers(first)).status_code == 200
    # The same event again, even carrying different content, is not applied twice.
    again = event_body(run.cyberdesk_id, status="error", event_id=event_id, error=["late"])

    response = post(client, again, signed_headers(again, msg_id="msg_1"))

    assert response.status_code == 200
    assert response.json() == {"status": "duplicate"}
    assert WebhookEvent.objects.count() == 1
    run.refresh_from_db()
    assert (run.status, run.errors) == (RunStatus.SUCCESS, [])


def test_an_older_event_never_overwrites_a_finished_run(client, run):
    finished = event_body(run.cyberdesk_id, status="success")
    post(client, finished, signed_headers(finished, msg_id="msg_new"))
    older = event_body(run.cyberdesk_id, status="running", output_data=None)

    response = post(client, older, signed_headers(older, msg_id="msg_old"))

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS
    assert run.output_data == {"invoice_total": "41.20"}
    stale = WebhookEvent.objects.get(event_id=json.loads(older)["event_id"])
    assert (stale.run, stale.applied) == (run, False)


def test_a_second_terminal_status_does_not_replace_the_first(client, run):
    success = event_body(run.cyberdesk_id, status="success")
    post(client, success, signed_headers(success))
    error = event_body(run.cyberdesk_id, status="error", error=["machine lost"])

    post(client, error, signed_headers(error, msg_id="msg_2"))

    run.refresh_from_db()
    assert (run.status, run.errors) == (RunStatus.SUCCESS, [])


def test_an_event_for_a_run_we_do_not_know_is_recorded_and_answered_200(client, run):
    stranger = uuid.uuid4()
    body = event_body(stranger)

    response = post(client, body, signed_headers(body))

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.cyberdesk_run_id, event.run, event.applied) == (stranger, None, False)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_other_event_types_are_recorded_without_touching_runs(client, run):
    body = json.dumps({"event_id": "e-9", "event_type": "workflow_updated", "data": {}}).encode()

    assert post(client, body, signed_headers(body)).status_code == 200
    assert WebhookEvent.objects.get().event_type == "workflow_updated"
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_an_event_without_a_type_is_a_run_complete_when_it_carries_a_run(client, run):
    """Cyberdesk sends only run_complete; a payload that leaves the type out still finishes
    the run it carries, and one that carries no run is recorded as "unknown"."""
    typed = json.loads(event_body(run.cyberdesk_id, event_id="e-run"))
    del typed["event_type"]
    with_run = json.dumps(typed).encode()
    without_run = json.dumps({"event_id": "e-none", "data": {}}).encode()

    assert post(client, with_run, signed_headers(with_run)).json() == {"status": "applied"}
    assert post(client, without_run, signed_headers(without_run)).json() == {"status": "ignored"}

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS
    types = dict(WebhookEvent.objects.values_list("event_id", "event_type"))
    assert types == {"e-run": "run_complete", "e-none": "unknown"}


def test_an_event_type_is_stored_cut_to_its_column(client):
    body = json.dumps({"event_id": "e-long", "event_type": "x" * 80}).encode()

    assert post(client, body, signed_headers(body)).status_code == 200
    assert WebhookEvent.objects.get().event_type == "x" * 50


def test_an_event_id_longer_than_its_column_is_refused(client):
    """Cut, two different ids could collide into one and the second delivery be taken for a
    redelivery; so an id the column cannot hold whole is refused (and none is ever that long)."""
    longest = "e" * 100
    too_long = "e" * 101
    fits = json.dumps({"event_id": longest, "event_type": "workflow_updated"}).encode()
    refused = json.dumps({"event_id": too_long, "event_type": "workflow_updated"}).encode()

    assert post(client, fits, signed_headers(fits)).status_code == 200
    response = post(client, refused, signed_headers(refused))

    assert response.status_code == 400
    assert response.json() == {"detail": "event id too long"}
    assert list(WebhookEvent.objects.values_list("event_id", flat=True)) == [longest]


def test_finishing_a_run_leaves_fetching_its_cost_to_the_worker(
    client, run, django_capture_on_commit_callbacks
):
    body = event_body(run.cyberdesk_id, status="success")

    with django_capture_on_commit_callbacks(execute=True):
        post(client, body, signed_headers(body))

    queued = DBTaskResult.objects.get()
    assert queued.task_path == "launcher.tasks.run_finalize_task"
    assert queued.args_kwargs == {"args": [run.pk], "kwargs": {}}


def test_a_finished_event_for_a_retried_run_is_checked_with_the_api_first(
    client, run, django_capture_on_commit_callbacks
):
    """The launcher retried the run in place (attempt 2): a late run_complete may belong to
    attempt 1, so the worker asks the API instead of trusting it."""
    Run.objects.filter(pk=run.pk).update(attempt=2, status=RunStatus.SCHEDULING)
    body = event_body(run.cyberdesk_id, status="error", error=["attempt 1 failed"])

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, body, signed_headers(body))

    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.SCHEDULING
    assert DBTaskResult.objects.get().task_path == "launcher.tasks.run_refresh_task"


@pytest.mark.parametrize(
    "current, expected",
    [
        ("running", RunStatus.RUNNING),  # the event was attempt 1's: attempt 2 goes on
        ("task_failed", RunStatus.TASK_FAILED),  # attempt 2 did finish: now it is trusted
    ],
)
def test_the_check_the_late_event_asked_for_settles_the_run_from_the_api(
    client, run, settings, django_capture_on_commit_callbacks, current, expected
):
    """Run the task the webhook enqueued: the API's answer decides, not the event — even when
    a viewer's poll refreshed the run a moment ago (the task forces its refresh)."""
    Run.objects.filter(pk=run.pk).update(attempt=2, status=RunStatus.SCHEDULING, synced_at=NOW)
    body = event_body(run.cyberdesk_id, status="error", error=["attempt 1 failed"])
    with django_capture_on_commit_callbacks(execute=True):
        post(client, body, signed_headers(body))
    queued = DBTaskResult.objects.get()

    with serve(settings) as api:
        api.add_run(run_id=run.cyberdesk_id, workflow_id=run.workflow_id, status=current)
        api.costs[str(run.cyberdesk_id)] = 0.25
        task = getattr(tasks, queued.task_path.rsplit(".", 1)[1])
        task.call(*queued.args_kwargs["args"], **queued.args_kwargs["kwargs"])

    run.refresh_from_db()
    assert run.status == expected
    assert run.errors == []  # attempt 1's error never landed on attempt 2
    assert api.calls["GET /v1/runs/{id}"] >= 1  # asked the API (finalizing reads it again)
    # A run that finished here is finalized (its cost fetched) in the same task.
    assert api.calls["GET llm-costs"] == (1 if expected == RunStatus.TASK_FAILED else 0)


def test_it_answers_with_a_handful_of_queries(client, run, django_assert_max_num_queries):
    body = event_body(run.cyberdesk_id, status="success")

    # 10 before the run history; +2 for its entries (webhook received, status changed).
    with django_assert_max_num_queries(12):
        response = post(client, body, signed_headers(body))

    assert response.status_code == 200


def test_it_is_not_redirected_to_https_either(client, run, settings):
    settings.SECURE_SSL_REDIRECT = True
    body = event_body(run.cyberdesk_id)

    response = post(client, body, signed_headers(body))

    assert response.status_code == 200


# --- End to end: the sandbox's own signed delivery --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_run_finishes_here_through_its_signed_webhook(live_server, settings):
    """The sandbox signs and posts run_complete over real HTTP the way Svix does; the
    receiver verifies it and finishes the launcher's run — no polling involved."""
    from launcher.cyberdesk import get_client
    from launcher.sandbox.seed import WORKFLOW_ELIGIBILITY, seed_demo_data
    from launcher.sandbox.tasks import sandbox_tick

    settings.CYBERDESK_BASE_URL = live_server.url + "/sandbox"
    settings.CYBERDESK_API_KEY = settings.SANDBOX_API_KEY
    settings.SANDBOX_WEBHOOK_URL = live_server.url + "/webhooks/cyberdesk/"
    seed_demo_data()
    workflow = Workflow.objects.create(id=WORKFLOW_ELIGIBILITY, name="Check insurance eligibility")
    run = Run.objects.create(workflow=workflow, prompt_mode="stored")
    upstream = get_client().create_run(
        idempotency_key=str(run.idempotency_key),
        workflow_id=workflow.id,
        input_values={"patient_name": "Ada", "date_of_birth": "1990-01-02", "payer": "Aetna"},
        sensitive_input_values={"portal_password": "hunter2"},
    )
    Run.objects.filter(pk=run.pk).update(
        cyberdesk_id=upstream.id, submission=Submission.ACCEPTED, status=RunStatus.SCHEDULING
    )

    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        for _ in range(5):  # each pass advances due runs and sends due webhooks
            sandbox_tick()

    run.refresh_from_db()
    assert run.is_finished
    assert run.ended_at is not None
    event = WebhookEvent.objects.get(run=run)
    assert (event.event_type, event.applied) == ("run_complete", True)
    assert "hunter2" not in json.dumps(event.payload)


def test_each_outcome_is_named_in_the_answer(client, run, django_capture_on_commit_callbacks):
    """Svix shows the answer in its delivery log: what Launcher did with each event."""

    def answer(body):
        return post(client, body, signed_headers(body, msg_id=f"msg_{uuid.uuid4()}")).json()

    other_event = json.dumps({"event_id": "evt_other", "event_type": "workflow_updated"})
    assert answer(other_event.encode()) == {"status": "ignored"}
    assert answer(event_body(uuid.uuid4())) == {"status": "unknown run"}
    Run.objects.filter(pk=run.pk).update(attempt=2)
    assert answer(event_body(run.cyberdesk_id, status="error")) == {"status": "verifying"}
    Run.objects.filter(pk=run.pk).update(attempt=1)
    assert answer(event_body(run.cyberdesk_id)) == {"status": "applied"}
    assert answer(event_body(run.cyberdesk_id)) == {"status": "no change"}  # another event id


def test_news_about_a_run_already_finished_enqueues_nothing(
    client, run, django_capture_on_commit_callbacks
):
    """Only the event that finishes a run has it finalized (its cost and history fetched once)."""
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCESS)
    body = event_body(run.cyberdesk_id, status="success")

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, body, signed_headers(body))

    assert response.status_code == 200
    assert not DBTaskResult.objects.exists()
