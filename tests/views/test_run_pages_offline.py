"""A page never waits on the API to show what Launcher knows (issue 13, target 4), and a status
poll that finds nothing new costs less than a render (target 3)."""

import uuid
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse

from launcher.models import Run, RunStatus
from launcher.services import run_sync
from tests.fake_cyberdesk import FakeCyberdesk, serve
from tests.launch_api import NOW, make_run

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.fixture
def api(settings):
    settings.RUN_REFRESH_INTERVAL_SECONDS = 2.0
    with serve(settings) as fake:
        yield fake


@pytest.fixture
def api_down(settings):
    """Every request to the API fails to connect (counted in `.requests`)."""
    settings.RUN_REFRESH_INTERVAL_SECONDS = 2.0
    fake = FakeCyberdesk()

    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    fake.on_request = refuse
    with fake.serve():
        yield fake


def attachment(run, **fields) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "run_id": str(run.cyberdesk_id),
        "filename": "invoice.pdf",
        "content_type": "application/pdf",
        "attachment_type": "output",
        "size_bytes": 2048,
        "created_at": NOW.isoformat(),
        **fields,
    }


def finished(catalog, **fields):
    fields.setdefault("status", RunStatus.SUCCESS)
    fields.setdefault("started_at", NOW - timedelta(minutes=2))
    fields.setdefault("ended_at", NOW - timedelta(minutes=1))
    return make_run(catalog.workflow, **fields)


def page_url(run):
    return reverse("run_detail", args=[run.pk])


def status_url(run):
    return reverse("run_status", args=[run.pk])


# --- The run page renders from the database -------------------------------------------------


def test_the_run_page_never_calls_the_api(operator_client, catalog, api, clock):
    unfinished = make_run(catalog.workflow, synced_at=NOW - timedelta(minutes=5))  # due
    done = finished(catalog)  # attachments not stored yet

    assert operator_client.get(page_url(unfinished)).status_code == 200
    assert operator_client.get(page_url(done)).status_code == 200

    assert api.requests == []


def test_stored_attachments_are_listed_from_the_database(operator_client, catalog, api, clock):
    run = finished(catalog)
    api.attachments.append(attachment(run, filename="report.csv"))
    run_sync.run_finalize(run)  # what the worker does when the run finishes
    assert Run.objects.get(pk=run.pk).attachments[0]["filename"] == "report.csv"
    calls = len(api.requests)

    html = operator_client.get(page_url(run)).content.decode()

    assert ">report.csv</a>" in html and 'hx-trigger="load"' not in html
    assert len(api.requests) == calls


def test_attachments_not_stored_yet_load_after_the_page_once(operator_client, catalog, api, clock):
    run = finished(catalog)
    api.attachments.append(attachment(run))
    panel_url = reverse("run_attachments", args=[run.pk])

    page = operator_client.get(page_url(run)).content.decode()
    panel = operator_client.get(panel_url, headers=HTMX).content.decode()
    operator_client.get(panel_url, headers=HTMX)

    assert f'hx-get="{panel_url}" hx-trigger="load"' in page
    assert f'<a href="{panel_url}">Load them</a>' in page  # without JavaScript
    assert ">invoice.pdf</a>" in panel
    assert len(api.calls("GET", "/v1/run-attachments")) == 1  # then stored


@pytest.fixture
def attachments_cannot_be_stored(db):
    """A database that refuses to write `Run.attachments`, as a busy SQLite refuses a second
    writer: a real error from the database (a trigger), not a stand-in."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_attachments() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'database is busy'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_attachments BEFORE UPDATE OF attachments ON launcher_run "
                "FOR EACH ROW EXECUTE FUNCTION refuse_attachments()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_attachments BEFORE UPDATE OF attachments ON launcher_run "
                "BEGIN SELECT RAISE(ABORT, 'database is busy'); END"
            )


def test_attachments_listed_but_not_stored_still_show(
    operator_client, catalog, api, clock, attachments_cannot_be_stored
):
    run = finished(catalog)
    api.attachments.append(attachment(run))

    response = operator_client.get(reverse("run_attachments", args=[run.pk]), headers=HTMX)

    assert response.status_code == 200
    assert ">invoice.pdf</a>" in response.content.decode()
    assert Run.objects.get(pk=run.pk).attachments is None  # the next viewer lists them again


def test_without_javascript_the_attachments_link_stores_them_and_returns(
    operator_client, catalog, api, clock
):
    run = finished(catalog)
    api.attachments.append(attachment(run))
    response = operator_client.get(reverse("run_attachments", args=[run.pk]))
    assert response.status_code == 302 and response["Location"] == page_url(run)
    assert ">invoice.pdf</a>" in operator_client.get(page_url(run)).content.decode()


def test_a_retry_forgets_the_last_attempts_attachments(catalog, api, clock):
    run = finished(catalog, attachments=[attachment(make_run(catalog.workflow))])
    upstream = api.add_run(run_id=run.cyberdesk_id, workflow_id=catalog.workflow.pk)
    from launcher.cyberdesk import types

    Run.objects.filter(pk=run.pk).update(attempt=2)
    run.attempt = 2
    run_sync.run_apply_upstream(run, types.Run.from_api(upstream), restart=True)
    assert Run.objects.get(pk=run.pk).attachments is None


# --- With the API down --------------------------------------------------------------------------


def test_with_the_api_down_pages_answer_from_the_database_and_say_what_is_missing(
    operator_client, catalog, api_down, clock
):
    running = make_run(catalog.workflow, synced_at=NOW - timedelta(minutes=5))
    done = finished(catalog)

    page = operator_client.get(page_url(running))
    poll = operator_client.get(status_url(running), headers=HTMX)
    clock.shift(timedelta(seconds=3))
    again = operator_client.get(status_url(running), headers=HTMX)
    panel = operator_client.get(reverse("run_attachments", args=[done.pk]), headers=HTMX)

    assert page.status_code == poll.status_code == again.status_code == 200
    assert "Cyberdesk is unreachable (could not connect)" in poll.content.decode()
    assert "the status updates again once it answers" in again.content.decode()
    assert "The attachments are unavailable: Cyberdesk is unreachable" in panel.content.decode()
    # One quick attempt (no retries, no backoff), then nothing while the outage is noted.
    assert len(api_down.requests) == 1


def test_once_the_api_answers_again_the_poll_refreshes(operator_client, catalog, settings, clock):
    settings.RUN_REFRESH_INTERVAL_SECONDS = 2.0
    fake = FakeCyberdesk()
    down = {"now": True}

    def maybe_refuse(request):
        if down["now"]:
            raise httpx.ConnectError("connection refused", request=request)

    fake.on_request = maybe_refuse
    run = make_run(catalog.workflow, api=fake, synced_at=NOW - timedelta(minutes=5))
    fake.runs[str(run.cyberdesk_id)]["status"] = "success"
    with fake.serve():
        operator_client.get(status_url(run), headers=HTMX)
        down["now"] = False
        clock.shift(timedelta(seconds=31))  # the outage note has expired
        html = operator_client.get(status_url(run), headers=HTMX).content.decode()

    assert "Success" in html and "unreachable" not in html
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCESS


# --- The status poll: 204 when nothing changed ------------------------------------------------


def test_a_status_poll_with_nothing_new_answers_204_without_rendering(
    operator_client, catalog, api, clock, django_assert_num_queries
):
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    page = operator_client.get(page_url(run))
    version = page.context["status_version"]
    assert f'hx-headers=\'{{"X-Poll-Version": "{version}"}}\'' in page.content.decode()

    # session, user, permissions, run: the same reads as a render, and no template
    with django_assert_num_queries(4):
        same = operator_client.get(status_url(run), headers={**HTMX, "X-Poll-Version": version})
    assert same.status_code == 204 and same.content == b""

    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING_CHECKS)
    changed = operator_client.get(status_url(run), headers={**HTMX, "X-Poll-Version": version})
    assert changed.status_code == 200 and "Running checks" in changed.content.decode()


def test_a_finished_runs_poll_with_nothing_new_reads_neither_attempts_nor_history(
    operator_client, catalog, api, clock, django_assert_num_queries
):
    run = finished(catalog, attachments=[])
    version = operator_client.get(page_url(run)).context["status_version"]

    # session, user, permissions, run: the fingerprint is compared before the region's
    # Attempts and History (two queries) or its evidence are built
    with django_assert_num_queries(4):
        same = operator_client.get(status_url(run), headers={**HTMX, "X-Poll-Version": version})
    assert same.status_code == 204

    # session, user, permissions, run, then the Attempts and History it brings along
    with django_assert_num_queries(6):
        rendered = operator_client.get(status_url(run), headers=HTMX)
    assert rendered.status_code == 200 and rendered.context["status_version"] == version


def test_a_stale_or_missing_version_renders(operator_client, catalog, api, clock):
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    for headers in (HTMX, {**HTMX, "X-Poll-Version": "0000000000000000"}):
        response = operator_client.get(status_url(run), headers=headers)
        assert response.status_code == 200 and 'id="run-status"' in response.content.decode()


def test_the_fingerprint_follows_what_the_region_shows(catalog):
    from launcher.fingerprints import run_status_fingerprint

    run = make_run(catalog.workflow)
    before = run_status_fingerprint(run)
    for field, value in (
        ("status", RunStatus.SUCCESS),
        ("errors", ["boom"]),
        ("cost_usd", 1),
        ("output_data", {"a": 1}),
        ("attachments", []),
    ):
        changed = Run.objects.get(pk=run.pk)
        setattr(changed, field, value)
        assert run_status_fingerprint(changed) != before, field
    assert run_status_fingerprint(run, "outage") != before


def test_the_launch_page_with_the_api_down_tries_once_then_shows_the_last_mirror(
    clock, operator_client, catalog, api_down
):
    clock.shift(timedelta(hours=2))  # the workflow mirror and the model catalog are stale

    first = operator_client.get(reverse("launch"))
    second = operator_client.get(reverse("launch"))

    assert first.status_code == second.status_code == 200
    assert catalog.workflow.name in second.content.decode()
    assert len(api_down.requests) == 1  # one quick attempt; then the outage note holds
