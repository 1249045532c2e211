"""launcher.failures: the key that groups alike failures (ids, numbers, quoted values stripped;
a failing post-run check by its name), and the stored Run.failure_key kept true by save()."""

import pytest

from launcher.failures import error_normalise, failure_key
from launcher.models import Run, RunStatus
from tests.launch_api import make_run


@pytest.mark.parametrize(
    "first, second",
    [
        (
            "Customer 'c-101' not found (request 5f0c1a2b3c4d5e6f)",
            "Customer 'c-207' not found (request 91ab22aa33bb44cc)",
        ),
        (
            "Run 3f2b1c4d-1111-2222-3333-444455556666 timed out after 30 s",
            "Run 0a9e8d7c-aaaa-bbbb-cccc-ddddeeeeffff timed out after 125 s",
        ),
        ('Field "amount" is 12.50, expected 3', 'Field "total" is 7, expected 1,000'),
        ("Invoice INV-2024-0042 rejected", "Invoice INV-2025-0007 rejected"),
        ("See https://x.example/runs/1?a=2 for alice@example.com", "See https://y/z for b@c.io"),
    ],
)
def test_the_same_error_with_different_values_has_one_key(first, second):
    assert error_normalise(first) == error_normalise(second)


def test_different_errors_keep_different_keys():
    assert error_normalise("Login page did not load") != error_normalise("Invoice not found")


def test_the_normalised_text_stays_readable():
    assert error_normalise("Customer 'c-101' not found after 3 tries") == (
        "Customer <value> not found after <n> tries"
    )
    assert error_normalise("The form doesn't  exist") == "The form doesn't exist"


def test_a_failing_check_names_the_cluster_over_the_error():
    checks = [{"name": "Has invoice", "status": "success"}, {"name": "Total", "status": "failed"}]
    assert failure_key(status="task_failed", errors=["x 1"], post_run_checks=checks) == (
        "check:Total"
    )
    assert failure_key(status="error", errors=["Boom 42"], post_run_checks=[]) == "error:Boom <n>"
    assert failure_key(status="error", errors=[], post_run_checks=None) == (
        "error:(no error message)"
    )
    assert failure_key(status="success", errors=["x"], post_run_checks=checks) == ""


@pytest.mark.django_db
def test_the_stored_key_follows_the_run_through_save(catalog):
    run = make_run(catalog.workflow, status=RunStatus.RUNNING)
    assert run.failure_key == ""

    run.status, run.errors = RunStatus.TASK_FAILED, ["Customer 'c-1' not found"]
    run.save(update_fields=["status", "errors"])  # as run_sync's locked update writes it
    assert Run.objects.get(pk=run.pk).failure_key == "error:Customer <value> not found"

    run.status, run.errors = RunStatus.SCHEDULING, []  # a retry starts over
    run.save(update_fields=["status", "errors"])
    assert Run.objects.get(pk=run.pk).failure_key == ""


@pytest.mark.django_db
def test_news_from_the_api_sets_the_key(catalog):
    from launcher.cyberdesk import types
    from launcher.services.run_sync import run_apply_upstream
    from tests.fake_cyberdesk import upstream_run

    run = make_run(catalog.workflow, status=RunStatus.RUNNING)
    news = upstream_run(
        run.cyberdesk_id,
        workflow_id=catalog.workflow.pk,
        status="task_failed",
        error=["Timeout after 30 s on step 4"],
    )

    run_apply_upstream(run, types.Run.from_api(news))

    assert Run.objects.get(pk=run.pk).failure_key == "error:Timeout after <n> s on step <n>"


# --- Every way a failure arrives fills the key (webhook, poll, the batch sender's bulk path) ---


@pytest.mark.django_db
def test_a_failure_told_by_a_signed_webhook_sets_the_key(catalog, settings, clock):
    from django.test import Client

    from tests.test_webhooks import SECRET, URL, event_body, signed_headers

    settings.CYBERDESK_WEBHOOK_SECRET = SECRET
    run = make_run(catalog.workflow, status=RunStatus.RUNNING)
    body = event_body(run.cyberdesk_id, status="error", error=["Session 4711 timed out"])

    response = Client().post(
        URL,
        body,
        content_type="application/json",
        **{
            f"HTTP_{name.upper().replace('-', '_')}": value
            for name, value in signed_headers(body).items()
        },
    )

    assert response.status_code == 200
    assert Run.objects.get(pk=run.pk).failure_key == "error:Session <n> timed out"


@pytest.mark.django_db
def test_a_failure_seen_by_a_poll_of_many_runs_sets_the_key(catalog, settings, clock):
    from launcher.services.run_sync import runs_refresh_many
    from tests.fake_cyberdesk import FakeCyberdesk

    fake = FakeCyberdesk()
    runs = [make_run(catalog.workflow, status=RunStatus.RUNNING, api=fake) for _ in range(2)]
    fake.runs[str(runs[0].cyberdesk_id)].update(
        status="task_failed", error=["Customer 'c-9' not found"]
    )

    with fake.serve():
        runs_refresh_many(runs)

    keys = dict(Run.objects.values_list("pk", "failure_key"))
    assert keys == {runs[0].pk: "error:Customer <value> not found", runs[1].pk: ""}


@pytest.mark.django_db
def test_a_failure_recorded_in_bulk_by_the_batch_sender_sets_the_key(catalog):
    from launcher.cyberdesk import types
    from launcher.services.run_sync import runs_apply_upstream_many
    from tests.fake_cyberdesk import upstream_run

    failed, running = (make_run(catalog.workflow, status=RunStatus.SCHEDULING) for _ in range(2))
    news = [
        (failed, upstream_run(failed.cyberdesk_id, status="error", error=["Boom 42"])),
        (running, upstream_run(running.cyberdesk_id, status="running")),
    ]

    runs_apply_upstream_many([(run, types.Run.from_api(answer)) for run, answer in news])

    keys = dict(Run.objects.values_list("pk", "failure_key"))
    assert keys == {failed.pk: "error:Boom <n>", running.pk: ""}
