"""The runs page: filters kept in the URL, 50 a page at a constant number of queries, one poll
for the page that stops by itself and calls the API at most once per interval, bulk actions."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse

from launcher.models import Batch, PromptMode, Run, RunStatus, Submission
from tests.csrf import csrf_headers
from tests.fake_cyberdesk import FakeCyberdesk, serve, upstream_run
from tests.launch_api import NOW, make_model, make_run, make_workflow

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
POLL = 'hx-trigger="every 3s"'


@pytest.fixture
def api(settings):
    settings.RUN_REFRESH_INTERVAL_SECONDS = 3.0
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


def url(**params):
    from urllib.parse import urlencode

    return reverse("run_list") + (f"?{urlencode(params)}" if params else "")


def row_ids(response) -> list[int]:
    return [run.pk for run in response.context["runs"]]


def finished(catalog, **fields):
    fields.setdefault("status", RunStatus.SUCCESS)
    return make_run(catalog.workflow, **fields)


# --- Who may look --------------------------------------------------------------------------------


def test_an_outsider_gets_403_page_and_fragment(outsider_client):
    assert outsider_client.get(url()).status_code == 403
    assert outsider_client.get(url(), headers=HTMX).status_code == 403


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(url())
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- The list -----------------------------------------------------------------------------------


def test_each_row_shows_status_workflow_model_version_who_started_duration_cost(
    catalog, operator, operator_client
):
    run = finished(
        catalog,
        model_option=catalog.model,
        prompt_mode=PromptMode.LABEL,
        prompt_label="production",
        prompt_version=catalog.v1,
        launched_by=operator,
        started_at=NOW,
        ended_at=NOW + timedelta(minutes=2, seconds=5),
        cost_usd="0.0421",
    )

    response = operator_client.get(url())

    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="{reverse("run_detail", args=[run.pk])}"' in html
    assert 'class="badge status-success">Success<' in html
    for text in ("Invoice intake", "Claude Sonnet", "v1", "production", operator.username):
        assert text in html
    assert "2025-03-01 12:00 UTC" in html and "2m 05s" in html and "$0.0421" in html


def test_newest_first_fifty_a_page(catalog, operator_client):
    runs = [finished(catalog) for _ in range(53)]

    first = operator_client.get(url())
    older = first.context["page"].older
    second = operator_client.get(url(before=str(older)))
    back = operator_client.get(url(after=str(second.context["page"].newer)))

    assert row_ids(first) == [run.pk for run in reversed(runs)][:50]
    assert row_ids(second) == [run.pk for run in reversed(runs[:3])]
    assert row_ids(back) == row_ids(first)
    html = first.content.decode()
    assert f'href="?before={older}" rel="next">Older<' in html and 'rel="prev"' not in html
    assert "Page 1 of" not in html  # no count
    assert row_ids(operator_client.get(url(page=2))) == row_ids(second)  # an old numbered link


@pytest.mark.parametrize("rows", [5, 50])
def test_the_page_costs_the_same_number_of_queries_however_many_rows(
    catalog, operator, operator_client, django_assert_num_queries, rows
):
    other = make_model("GPT Operator")
    batch = Batch.objects.create(workflow=catalog.workflow)
    for n in range(rows):
        finished(
            catalog,
            model_option=(catalog.model, other, None)[n % 3],
            prompt_version=(catalog.v1, catalog.v2)[n % 2],
            prompt_mode=PromptMode.PINNED,
            launched_by=operator,
            batch=batch if n % 2 else None,
        )
    operator_client.get(url())  # warm the session

    # session, user, the permission, page (no count), the filter choices' version (the
    # choices were read by the warm-up and are cached until something they list changes)
    with django_assert_num_queries(5):
        assert operator_client.get(url()).status_code == 200
    with django_assert_num_queries(4):  # the poll: the same without the filter choices
        assert operator_client.get(url(), headers=HTMX).status_code == 200


@pytest.mark.parametrize("rows", [5, 50])
def test_a_refreshing_poll_with_no_news_costs_the_same_however_many_rows(
    catalog, operator_client, api, clock, django_assert_num_queries, rows
):
    for _ in range(rows):
        run = make_run(catalog.workflow, status=RunStatus.RUNNING, synced_at=NOW)
        api.add(upstream_run(run.cyberdesk_id, workflow_id=catalog.workflow.pk, created_at=NOW))
    operator_client.get(url(), headers=HTMX)  # warm the session
    clock.shift(timedelta(seconds=3))  # every run due again; the API has nothing new

    # session, user, the permission, page; claim, sweep, the claimed rows
    with django_assert_num_queries(7):
        response = operator_client.get(url(), headers=HTMX)

    assert response.status_code == 200 and len(response.context["runs"]) == rows
    assert api.calls["GET /v1/runs"] == 1


def test_filters_narrow_the_list_and_stay_in_the_url(catalog, operator, staff, operator_client):
    other_workflow = make_workflow(name="Claims")
    other_model = make_model("GPT Operator")
    batch = Batch.objects.create(workflow=catalog.workflow)
    target = finished(
        catalog,
        status=RunStatus.TASK_FAILED,
        model_option=other_model,
        prompt_mode=PromptMode.LABEL,
        prompt_label="staging",
        prompt_version=catalog.v2,
        launched_by=staff,
        batch=batch,
    )
    Run.objects.filter(pk=target.pk).update(created_at=NOW - timedelta(days=3))
    decoys = [
        make_run(other_workflow, status=RunStatus.TASK_FAILED),
        finished(catalog, model_option=other_model),
        finished(catalog, status=RunStatus.TASK_FAILED, launched_by=operator),
        finished(catalog, status=RunStatus.TASK_FAILED, prompt_version=catalog.v1),
    ]
    day = (NOW - timedelta(days=3)).date().isoformat()
    filters = {
        "workflow": str(catalog.workflow.pk),
        "status": "task_failed",
        "model": str(other_model.pk),
        "prompt": str(catalog.v2.pk),
        "label": "staging",
        "launched_by": str(staff.pk),
        "batch": str(batch.pk),
        "created_from": day,
        "created_to": day,
    }

    response = operator_client.get(url(**filters))

    assert row_ids(response) == [target.pk]
    assert len(decoys) == 4
    html = response.content.decode()
    assert f'<option value="{other_model.pk}" selected>' in html
    assert f'value="{day}"' in html
    for name in filters:  # each filter alone keeps the target and (but one) drops a decoy
        one = row_ids(operator_client.get(url(**{name: filters[name]})))
        assert target.pk in one, name
        assert len(one) < 5 or name == "created_from", name
    next_day = (NOW - timedelta(days=2)).date().isoformat()
    assert target.pk not in row_ids(operator_client.get(url(created_from=next_day)))


def test_workflow_default_and_stored_prompt_can_be_filtered_for(catalog, operator_client):
    default = finished(catalog, model_option=None)
    finished(catalog, model_option=catalog.model, prompt_mode=PromptMode.PINNED)

    assert row_ids(operator_client.get(url(model="default", prompt="stored"))) == [default.pk]


def test_a_nonsense_filter_is_ignored_and_explained_never_a_500(catalog, operator_client):
    run = finished(catalog)

    response = operator_client.get(url(workflow="nope", batch="x", created_from="yesterday"))

    assert response.status_code == 200
    assert row_ids(response) == [run.pk]
    assert "Choose a workflow from the list." in response.content.decode()


def test_an_empty_filtered_list_says_so(catalog, operator_client):
    finished(catalog)
    response = operator_client.get(url(status="error"))
    assert "No runs match these filters." in response.content.decode()


# --- Live ---------------------------------------------------------------------------------------


def test_the_page_polls_as_one_region_only_while_a_visible_run_is_unfinished(
    catalog, operator_client, api, clock
):
    running = make_run(catalog.workflow, status=RunStatus.RUNNING, synced_at=NOW)
    finished(catalog)

    html = operator_client.get(url(status="")).content.decode()

    assert html.count(POLL) == 1
    assert f'hx-get="{url(status="")}"' in html
    Run.objects.filter(pk=running.pk).update(status=RunStatus.SUCCESS)
    fragment = operator_client.get(url(status=""), headers=HTMX).content.decode()
    assert POLL not in fragment
    assert 'id="run-table"' in fragment and "<html" not in fragment


def test_many_watchers_make_one_list_call_per_interval(
    catalog, operator_client, staff_client, api, clock
):
    runs = []
    for _ in range(3):
        run = make_run(catalog.workflow, status=RunStatus.RUNNING)
        Run.objects.filter(pk=run.pk).update(created_at=NOW - timedelta(minutes=1))
        api.add(
            upstream_run(
                run.cyberdesk_id, workflow_id=catalog.workflow.pk, status="running", created_at=NOW
            )
        )
        runs.append(run)
    api.runs[str(runs[0].cyberdesk_id)]["status"] = "success"

    for watcher in (operator_client, staff_client, operator_client):
        response = watcher.get(url(), headers=HTMX)
        assert response.status_code == 200

    assert api.calls["GET /v1/runs"] == 1
    list_call = next(r for r in api.requests if r.url.path.endswith("/v1/runs"))
    assert "fields" in list_call.url.params
    html = response.content.decode()
    assert html.count("status-success") == 1  # the refresh reached every watcher

    clock.shift(timedelta(seconds=3))
    operator_client.get(url(), headers=HTMX)
    assert api.calls["GET /v1/runs"] == 2


# --- Bulk actions -------------------------------------------------------------------------------


def _post(client, data):
    client.get(url())
    token = client.cookies["csrftoken"].value
    return client.post(reverse("run_bulk_action"), {"csrfmiddlewaretoken": token, **data})


def test_cancel_selected_cancels_each_and_reports_what_could_not_be(
    catalog, operator_client, settings
):
    with serve(settings) as launch_api:
        active = make_run(catalog.workflow, api=launch_api, status=RunStatus.RUNNING)
        done = make_run(catalog.workflow, api=launch_api, status=RunStatus.SUCCESS)

        response = _post(
            operator_client,
            {"action": "cancel", "run": [active.pk, done.pk], "query": "status=running&page=1"},
        )

    assert response.status_code == 302
    assert response["Location"] == url(status="running", page="1")
    active.refresh_from_db()
    assert active.status == RunStatus.CANCELLED
    page = operator_client.get(response["Location"]).content.decode()
    assert f"Cancel requested for 1 run(s): {active.pk}." in page
    assert f"Run {done.pk}: This run has already finished." in page


def test_retry_selected_retries_finished_runs(catalog, operator_client, settings):
    with serve(settings) as launch_api:
        failed = make_run(catalog.workflow, api=launch_api, status=RunStatus.TASK_FAILED)
        launch_api.runs[str(failed.cyberdesk_id)]["status"] = "task_failed"

        response = _post(operator_client, {"action": "retry", "run": [failed.pk]})

    assert response.status_code == 302 and response["Location"] == url()
    failed.refresh_from_db()
    assert (failed.status, failed.attempt) == (RunStatus.SCHEDULING, 2)


def test_bulk_actions_need_the_permission_and_csrf(catalog, outsider_client, operator_client):
    run = make_run(catalog.workflow, status=RunStatus.RUNNING, submission=Submission.ACCEPTED)
    outsider_client.get(reverse("login"))

    response = outsider_client.post(
        reverse("run_bulk_action"),
        {"action": "cancel", "run": [run.pk]},
        headers=csrf_headers(outsider_client),  # the 403 is then the permission check's
    )
    assert response.status_code == 403
    assert (
        operator_client.post(
            reverse("run_bulk_action"), {"action": "cancel", "run": [run.pk]}
        ).status_code
        == 403
    )
    assert operator_client.get(reverse("run_bulk_action")).status_code == 405


def test_bulk_action_without_a_selection_says_so(catalog, operator_client):
    response = _post(operator_client, {"action": "cancel"})
    page = operator_client.get(response["Location"]).content.decode()
    assert "Tick at least one run first." in page


@pytest.mark.parametrize("odd", ["²", "٣", "99999999999999999999999", "-1", "0", "x"])
def test_bulk_action_ids_that_cannot_be_runs_are_left_out(catalog, operator_client, odd):
    response = _post(operator_client, {"action": "cancel", "run": [odd]})

    assert response.status_code == 302
    page = operator_client.get(response["Location"]).content.decode()
    assert "Tick at least one run first." in page


def test_an_unused_uuid_is_a_fine_filter(catalog, operator_client):
    finished(catalog)
    assert row_ids(operator_client.get(url(workflow=str(uuid.uuid4())))) == []
