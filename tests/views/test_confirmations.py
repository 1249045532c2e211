"""Destructive actions ask first (issue 14): Cancel, Retry, Cancel selected, Retry selected,
Cancel the rest, Retry failed runs. The confirmation says what will happen and to how many runs;
it is a page without JavaScript and a dialog fragment with htmx; asking changes nothing."""

import pytest
from django.test import Client
from django.urls import reverse

from launcher.models import Batch, Run, RunStatus
from tests.fake_cyberdesk import serve
from tests.launch_api import make_batch, make_run

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def _csrf(client) -> str:
    client.get(reverse("run_list"))
    return client.cookies["csrftoken"].value


def test_cancel_asks_first_on_a_page_that_posts_to_the_action(catalog, operator_client, api):
    run = make_run(catalog.workflow, status=RunStatus.RUNNING, api=api)

    response = operator_client.get(reverse("run_cancel_confirm", args=[run.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert f"Cancel run {run.pk}?" in html and "<html" in html
    assert f'action="{reverse("run_cancel", args=[run.pk])}"' in html
    assert f"Yes, cancel run {run.pk}" in html and "Keep it running" in html
    assert 'name="csrfmiddlewaretoken"' in html
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING  # asking changed nothing
    assert [r.method for r in api.requests if r.method != "GET"] == []


def test_the_run_page_buttons_lead_to_the_confirmations(catalog, operator_client, api):
    running = make_run(catalog.workflow, status=RunStatus.RUNNING, api=api)
    finished = make_run(catalog.workflow, status=RunStatus.TASK_FAILED, api=api)

    running_html = operator_client.get(reverse("run_detail", args=[running.pk])).content.decode()
    finished_html = operator_client.get(reverse("run_detail", args=[finished.pk])).content.decode()

    confirm_cancel = reverse("run_cancel_confirm", args=[running.pk])
    assert f'<form method="get" action="{confirm_cancel}" hx-get="{confirm_cancel}"' in running_html
    assert 'hx-target="#confirm-dialog"' in running_html
    assert reverse("run_retry_confirm", args=[finished.pk]) in finished_html


def test_retry_names_the_next_attempt_and_keeps_the_last(catalog, operator_client, api):
    run = make_run(catalog.workflow, status=RunStatus.TASK_FAILED, attempt=2, api=api)

    response = operator_client.get(reverse("run_retry_confirm", args=[run.pk]), headers=HTMX)

    html = response.content.decode()
    assert "<html" not in html  # the dialog's fragment
    assert "Retry starts attempt 3 of this run; attempt 2&#x27;s results stay here." in html
    assert (
        'hx-post="{}" hx-target="#run-status"'.format(reverse("run_retry", args=[run.pk])) in html
    )
    assert "Yes, start attempt 3" in html


def test_cancel_selected_counts_the_runs_it_will_stop(catalog, operator_client, api):
    running = [make_run(catalog.workflow, status=RunStatus.RUNNING) for _ in range(2)]
    done = make_run(catalog.workflow, status=RunStatus.SUCCESS)
    ticked = [str(run.pk) for run in [*running, done]]

    response = operator_client.post(
        reverse("run_bulk_confirm"),
        {
            "csrfmiddlewaretoken": _csrf(operator_client),
            "action": "cancel",
            "run": ticked,
            "query": "status=running",
        },
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "Cancel 2 runs?" in html
    assert "Cyberdesk stops 2 runs of the 3 ticked" in html and "1 run already finished" in html
    assert f'action="{reverse("run_bulk_action")}"' in html
    for pk in ticked:
        assert f'<input type="hidden" name="run" value="{pk}">' in html
    assert '<input type="hidden" name="query" value="status=running">' in html
    assert all(run.status == RunStatus.RUNNING for run in Run.objects.filter(pk__in=ticked[:2]))


def test_retry_selected_counts_the_finished_runs(catalog, operator_client, api):
    runs = [make_run(catalog.workflow, status=RunStatus.ERROR) for _ in range(3)]

    response = operator_client.post(
        reverse("run_bulk_confirm"),
        {
            "csrfmiddlewaretoken": _csrf(operator_client),
            "action": "retry",
            "run": [str(run.pk) for run in runs],
        },
        headers=HTMX,
    )

    assert "Retry 3 runs?" in response.content.decode()


def test_bulk_confirm_with_nothing_ticked_says_so_like_the_action(catalog, operator_client):
    response = operator_client.post(
        reverse("run_bulk_confirm"),
        {"csrfmiddlewaretoken": _csrf(operator_client), "action": "cancel"},
    )

    assert response.status_code == 302
    assert (
        "Tick at least one run first." in operator_client.get(response["Location"]).content.decode()
    )


def test_cancel_the_rest_says_what_happens_to_which_runs(catalog, operator_client):
    batch = make_batch(catalog.workflow, queued=3, running=2, success=1)

    html = operator_client.get(reverse("batch_cancel_confirm", args=[batch.pk])).content.decode()

    assert "Cancel the rest of March?" in html
    assert "3 runs not sent yet will never be sent." in html
    assert "Cyberdesk stops 2 runs still active" in html
    assert "1 run already finished keep" in html
    assert "Yes, cancel 5 runs" in html
    assert Batch.objects.get().state == Batch.State.SUBMITTING  # nothing changed


def test_retry_failed_runs_counts_them(catalog, operator_client):
    batch = make_batch(catalog.workflow, success=2, task_failed=4)

    response = operator_client.get(
        reverse("batch_retry_failed_confirm", args=[batch.pk]), headers=HTMX
    )

    html = response.content.decode()
    assert "Retry 4 runs that failed in March?" in html and "Yes, retry 4 runs" in html
    assert 'hx-target="#batch-progress"' in html


@pytest.mark.parametrize(
    "name",
    [
        "run_cancel_confirm",
        "run_retry_confirm",
        "batch_cancel_confirm",
        "batch_retry_failed_confirm",
    ],
)
def test_outsiders_get_no_confirmation(catalog, outsider_client, name):
    batch = make_batch(catalog.workflow, running=1)
    target = batch.pk if name.startswith("batch") else batch.runs.get().pk

    assert outsider_client.get(reverse(name, args=[target])).status_code == 403


def test_bulk_confirm_needs_csrf(catalog, operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    run = make_run(catalog.workflow, status=RunStatus.RUNNING)

    response = client.post(reverse("run_bulk_confirm"), {"action": "cancel", "run": [run.pk]})

    assert response.status_code == 403


def test_a_confirmation_costs_the_same_queries_for_a_big_batch(
    catalog, operator_client, django_assert_num_queries
):
    small = make_batch(catalog.workflow, queued=1, running=1)
    big = make_batch(catalog.workflow, queued=30, running=20, success=10)
    operator_client.get(reverse("batch_cancel_confirm", args=[small.pk]))  # warm the session

    # session, user, its permissions, the batch, its progress (the cells' kept counters, the
    # unfinished runs' count)
    with django_assert_num_queries(6) as small_queries:
        operator_client.get(reverse("batch_cancel_confirm", args=[small.pk]))
    with django_assert_num_queries(len(small_queries.captured_queries)):
        operator_client.get(reverse("batch_cancel_confirm", args=[big.pk]))
