"""Attempts are kept across every kind of retry; a finished attempt's results never change;
the run's history records who did what and where the news came from."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from svix.webhooks import Webhook

from launcher.cyberdesk import types
from launcher.models import (
    Batch,
    Run,
    RunAttempt,
    RunEvent,
    RunRecordImmutable,
    RunStatus,
)
from launcher.services.batches import batch_retry_upstream
from launcher.services.run_sync import run_apply_upstream, run_refresh
from launcher.services.runs import RunActionFailed, run_cancel, run_launch, run_retry
from tests.fake_cyberdesk import FakeCyberdesk, serve, upstream_run
from tests.launch_api import NOW, make_run

pytestmark = pytest.mark.django_db

HISTORY = [
    {"role": "user", "content": [{"type": "text", "text": "Look up c-1."}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
]
CHECKS = [{"name": "Has invoice", "status": "success", "type": "x"}]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


def finished(catalog, api, status=RunStatus.SUCCESS, **fields):
    values = {
        "started_at": NOW - timedelta(seconds=40),
        "ended_at": NOW - timedelta(seconds=12),
        "output_data": {"invoice": "INV-1", "total": 12.5},
        "errors": [] if status == RunStatus.SUCCESS else ["The agent gave up"],
        "post_run_checks": CHECKS,
        "usage_metadata": {"total_agentic_steps": 7, "input_tokens": 1200},
        "message_history": HISTORY,
        "cost_usd": Decimal("0.050000"),
    }
    values.update(fields)
    run = make_run(catalog.workflow, api=api, status=status, **values)
    api.runs[str(run.cyberdesk_id)]["status"] = str(status)
    return run


def assert_kept(attempt: RunAttempt, run_before: Run):
    assert attempt.status == run_before.status
    assert attempt.started_at == run_before.started_at
    assert attempt.ended_at == run_before.ended_at
    assert attempt.output_data == run_before.output_data
    assert attempt.errors == run_before.errors
    assert attempt.post_run_checks == run_before.post_run_checks
    assert attempt.usage_metadata == run_before.usage_metadata
    assert attempt.message_history == run_before.message_history
    assert attempt.cost_usd == run_before.cost_usd


# --- Kept across a single retry, a bulk retry and a batch retry --------------------------------


def test_a_retry_keeps_every_result_of_the_finished_attempt(catalog, api, operator):
    run = finished(catalog, api)
    before = Run.objects.get(pk=run.pk)
    api.attachments.append(
        {
            "id": str(uuid.uuid4()),
            "run_id": str(run.cyberdesk_id),
            "filename": "export.csv",
            "content_type": "text/csv",
            "attachment_type": "output",
            "size_bytes": 120,
            "storage_path": "x",
            "created_at": NOW.isoformat(),
        }
    )

    run_retry(run=run, user=operator)

    kept = RunAttempt.objects.get(run=run)
    assert kept.number == 1
    assert_kept(kept, before)
    assert [a["filename"] for a in kept.attachments] == ["export.csv"]
    run.refresh_from_db()
    assert run.attempt == 2 and run.output_data is None and run.cost_usd is None


def test_a_second_retry_keeps_both_earlier_attempts_unchanged(catalog, api, operator):
    run = finished(catalog, api)
    run_retry(run=run, user=operator)
    first = RunAttempt.objects.get(run=run, number=1)
    # Attempt 2 finishes with other results, then is retried too.
    upstream = upstream_run(
        run.cyberdesk_id,
        workflow_id=catalog.workflow.pk,
        status="task_failed",
        output_data={"invoice": None},
        error=["Not found"],
    )
    run_apply_upstream(run, types.Run.from_api(upstream))
    api.runs[str(run.cyberdesk_id)]["status"] = "task_failed"
    run_retry(run=run, user=operator)

    attempts = list(RunAttempt.objects.filter(run=run).order_by("number"))
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].output_data == first.output_data == {"invoice": "INV-1", "total": 12.5}
    assert attempts[1].status == RunStatus.TASK_FAILED
    assert attempts[1].output_data == {"invoice": None}
    assert attempts[1].errors == ["Not found"]


def test_a_kept_attempt_refuses_to_change(catalog, api, operator):
    run = finished(catalog, api)
    run_retry(run=run, user=operator)
    kept = RunAttempt.objects.get(run=run)
    kept.output_data = {"tampered": True}
    with pytest.raises(RunRecordImmutable):
        kept.save()
    assert RunAttempt.objects.get(pk=kept.pk).output_data == {"invoice": "INV-1", "total": 12.5}


def test_a_refused_retry_keeps_no_copy_and_the_run_keeps_its_attempt(catalog, api, operator):
    run = finished(catalog, api, status=RunStatus.ERROR)
    api.runs[str(run.cyberdesk_id)]["status"] = "running"  # the API refuses (409)
    with pytest.raises(RunActionFailed):
        run_retry(run=run, user=operator)
    run.refresh_from_db()
    assert run.attempt == 1 and run.output_data == {"invoice": "INV-1", "total": 12.5}
    assert not RunAttempt.objects.filter(run=run).exists()
    assert not RunEvent.objects.filter(run=run, kind="retried").exists()


def test_a_missing_history_and_cost_are_fetched_before_the_attempt_is_kept(catalog, api, operator):
    run = finished(catalog, api, message_history=None, cost_usd=None)
    api.runs[str(run.cyberdesk_id)]["run_message_history"] = HISTORY
    api.costs[str(run.cyberdesk_id)] = 0.0321

    run_retry(run=run, user=operator)

    kept = RunAttempt.objects.get(run=run)
    assert kept.message_history == HISTORY
    assert kept.cost_usd == Decimal("0.032100")


def test_a_bulk_retry_from_the_runs_list_keeps_each_attempt(catalog, operator_client, settings):
    with serve(settings) as launch_api:
        runs = [finished(catalog, launch_api, output_data={"n": n}) for n in range(3)]
        operator_client.get(reverse("run_list"))
        token = operator_client.cookies["csrftoken"].value
        response = operator_client.post(
            reverse("run_bulk_action"),
            {"csrfmiddlewaretoken": token, "action": "retry", "run": [r.pk for r in runs]},
        )
    assert response.status_code == 302
    for n, run in enumerate(runs):
        kept = RunAttempt.objects.get(run=run)
        assert kept.number == 1 and kept.output_data == {"n": n}
        assert Run.objects.get(pk=run.pk).attempt == 2


def test_a_batch_retry_keeps_each_failed_runs_attempt(catalog, operator, settings):
    with serve(settings) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow)
        failed = finished(catalog, launch_api, status=RunStatus.TASK_FAILED, batch=batch)
        errored = finished(catalog, launch_api, status=RunStatus.ERROR, batch=batch)
        good = finished(catalog, launch_api, batch=batch)
        batch_retry_upstream(
            batch=batch,
            targets=[[failed.pk, 1], [errored.pk, 1]],
            user=operator,
            concurrency=1,
            sleep=lambda seconds: None,
        )
    assert {a.run_id: a.status for a in RunAttempt.objects.all()} == {
        failed.pk: RunStatus.TASK_FAILED,
        errored.pk: RunStatus.ERROR,
    }
    assert not RunAttempt.objects.filter(run=good).exists()


# --- A finished attempt's outputs stay as they were ---------------------------------------------


def test_a_late_poll_does_not_replace_a_finished_attempts_outputs(catalog, api):
    run = finished(catalog, api)
    late = upstream_run(
        run.cyberdesk_id,
        workflow_id=catalog.workflow.pk,
        status="success",
        output_data={"invoice": "INV-999"},
        post_run_checks=[{"name": "Has invoice", "status": "failed"}],
        usage_metadata={"total_agentic_steps": 1},
        run_message_history=[{"role": "assistant", "content": "other"}],
    )
    run_apply_upstream(run, types.Run.from_api(late))
    run.refresh_from_db()
    assert run.output_data == {"invoice": "INV-1", "total": 12.5}
    assert run.post_run_checks == CHECKS
    assert run.usage_metadata == {"total_agentic_steps": 7, "input_tokens": 1200}
    assert run.message_history == HISTORY


def test_a_later_event_still_fills_in_what_a_finished_attempt_lacks(catalog, api):
    run = finished(catalog, api, message_history=None)
    full = upstream_run(
        run.cyberdesk_id,
        workflow_id=catalog.workflow.pk,
        status="success",
        output_data={"invoice": "INV-999"},
        run_message_history=HISTORY,
    )
    run_apply_upstream(run, types.Run.from_api(full))
    run.refresh_from_db()
    assert run.message_history == HISTORY  # was missing: filled in
    assert run.output_data == {"invoice": "INV-1", "total": 12.5}  # was known: kept


def _webhook(client, run, *, event_id, output):
    import json

    body = json.dumps(
        {
            "event_id": event_id,
            "event_type": "run_complete",
            "run": upstream_run(
                run.cyberdesk_id,
                workflow_id=run.workflow_id,
                status="success",
                ended_at=NOW.isoformat(),
                output_data=output,
            ),
        }
    ).encode()
    signature = Webhook(SECRET).sign(event_id, NOW, body.decode())
    headers = {
        "svix-id": event_id,
        "svix-timestamp": str(int(NOW.timestamp())),
        "svix-signature": signature,
    }
    return client.post(
        "/webhooks/cyberdesk/", body, content_type="application/json", headers=headers
    )


def test_a_second_signed_terminal_webhook_leaves_the_outputs(catalog, settings, client, clock):
    settings.CYBERDESK_WEBHOOK_SECRET = SECRET
    run = make_run(catalog.workflow, status=RunStatus.RUNNING)
    assert _webhook(client, run, event_id="evt_1", output={"total": "41.20"}).status_code == 200
    # Redelivered under another event id, with other outputs.
    response = _webhook(client, run, event_id="evt_2", output={"total": "0.00"})
    assert response.json() == {"status": "no change"}
    # And the very same event again.
    assert _webhook(client, run, event_id="evt_1", output={"x": 1}).json() == {
        "status": "duplicate"
    }
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS and run.output_data == {"total": "41.20"}
    webhooks = RunEvent.objects.filter(run=run, kind="webhook").order_by("at", "id")
    assert [e.detail["outcome"] for e in webhooks] == ["applied", "no change", "duplicate"]
    status = RunEvent.objects.get(run=run, kind="status")
    assert status.source == "webhook" and status.detail == {"from": "running", "to": "success"}


# --- History ------------------------------------------------------------------------------------


def test_the_history_records_launch_acceptance_polls_cancel_and_retry(
    catalog, api, operator, clock
):
    run = run_launch(
        user=operator,
        workflow=catalog.workflow,
        model_option=catalog.model,
        prompt_choice="label:production",
        input_values={"customer_id": "c-1", "age": 40},
        idempotency_key=uuid.uuid4(),
    )
    api.runs[str(run.cyberdesk_id)]["status"] = "running"
    clock.shift(timedelta(seconds=5))
    run_refresh(run)
    run_cancel(run=run, user=operator)
    api.runs[str(run.cyberdesk_id)]["status"] = "cancelled"
    run_retry(run=Run.objects.get(pk=run.pk), user=operator)

    events = list(RunEvent.objects.filter(run=run).order_by("at", "id"))
    summary = [(e.kind, e.source, e.actor_id, e.attempt) for e in events]
    assert summary == [
        ("launched", "user", operator.pk, 1),
        ("accepted", "launcher", None, 1),
        ("status", "launcher", None, 1),  # pending → scheduling
        ("status", "poll", None, 1),  # scheduling → running
        ("cancel_requested", "user", operator.pk, 1),
        ("status", "user", None, 1),  # running → cancelled
        ("retried", "user", operator.pk, 2),
        ("status", "user", None, 2),  # cancelled → scheduling (attempt 2)
    ]
    launched = events[0].detail
    assert launched["model"] == "Claude Sonnet" and launched["prompt"] == "production (v1)"
    assert launched["prompt_version"] == 1
    assert events[3].detail == {"from": "scheduling", "to": "running"}
    assert events[6].detail == {"previous_attempt": 1}


def test_a_history_entry_refuses_to_change(catalog, api, operator):
    run = finished(catalog, api)
    run_retry(run=run, user=operator)
    event = RunEvent.objects.filter(run=run).first()
    event.detail = {"forged": True}
    with pytest.raises(RunRecordImmutable):
        event.save()


def test_a_batchs_runs_each_get_a_launched_entry(catalog, operator, api):
    from launcher.services.batches import batch_create, batch_inputs_check
    from launcher.services.prompts import prompt_resolve_choice

    prompt = prompt_resolve_choice(workflow=catalog.workflow, choice="label:production")
    check = batch_inputs_check(
        workflow=catalog.workflow,
        prompts=[prompt],
        inputs={"customer_id": "c-1", "age": 40},
        count=3,
    )
    batch = batch_create(
        user=operator,
        workflow=catalog.workflow,
        models=[catalog.model],
        prompts=[prompt],
        rows=check.rows,
        token=uuid.uuid4(),
    )
    events = RunEvent.objects.filter(run__batch=batch, kind="launched")
    assert events.count() == 3
    assert {e.actor_id for e in events} == {operator.pk}
    assert {e.detail["prompt"] for e in events} == {"production (v1)"}
    assert {e.detail["batch"] for e in events} == {batch.pk}


def test_cancelling_a_batch_records_who_cancelled_its_unsent_runs(catalog, operator, api):
    from launcher.services.batches import batch_cancel_rest

    batch = Batch.objects.create(workflow=catalog.workflow)
    queued = [
        make_run(
            catalog.workflow,
            batch=batch,
            cyberdesk_id=None,
            submission="queued",
            status=RunStatus.PENDING,
        )
        for _ in range(2)
    ]
    sent = make_run(catalog.workflow, batch=batch, status=RunStatus.SUCCESS)

    batch_cancel_rest(batch=batch, user=operator)

    events = RunEvent.objects.filter(kind="cancel_requested")
    assert {e.run_id for e in events} == {run.pk for run in queued}
    assert {(e.actor_id, e.source, e.detail["before_sending"]) for e in events} == {
        (operator.pk, "user", True)
    }
    assert not RunEvent.objects.filter(run=sent).exists()
