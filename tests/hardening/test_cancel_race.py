"""Issue 15 item 9: a cancel racing a run that finishes. Against the real API a PATCH
{"status": "cancelled"} might overwrite `success`, or mark a run cancelled while its agent
keeps working; Launcher reads first, never PATCHes a finished run, never lets a cancel
overwrite a terminal status, and records an answer it did not expect."""

import json

import httpx
import pytest
from django.urls import reverse

from launcher.models import Run, RunStatus
from launcher.services.runs import run_cancel
from tests.fake_cyberdesk import serve
from tests.launch_api import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def test_a_run_that_finished_upstream_is_not_patched(catalog, api, operator):
    run = make_run(catalog.workflow, api=api)  # running here
    api.runs[str(run.cyberdesk_id)].update(status="success", output_data={"total": 3})

    run_cancel(run=run, user=operator)

    assert api.calls("GET", f"/v1/runs/{run.cyberdesk_id}")
    assert api.patches() == []
    stored = Run.objects.get(pk=run.pk)
    assert stored.status == RunStatus.SUCCESS
    assert stored.output_data == {"total": 3}


def test_the_page_says_nothing_was_cancelled_when_it_had_finished(catalog, api, operator_client):
    run = make_run(catalog.workflow, api=api)
    page = operator_client.get(reverse("run_detail", args=[run.pk]))
    api.runs[str(run.cyberdesk_id)]["status"] = "success"  # finishes after the page was shown
    response = operator_client.post(
        reverse("run_cancel", args=[run.pk]),
        {"csrfmiddlewaretoken": page.context["csrf_token"]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert b"had already finished (Success); nothing was cancelled" in response.content
    assert api.patches() == []


def test_a_cancel_answer_never_overwrites_a_terminal_status_launcher_holds(catalog, api, operator):
    """The run finishes (a webhook lands) while the PATCH is on its way, and the API answers
    `cancelled` (it overwrote `success` upstream): Launcher keeps `success` and says so."""
    run = make_run(catalog.workflow, api=api)

    def finish_during_the_patch(request):
        if request.method == "PATCH":
            Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCESS)
        return None  # the fake then answers the PATCH with "cancelled"

    api.on_request = finish_during_the_patch
    run_cancel(run=run, user=operator)

    stored = Run.objects.get(pk=run.pk)
    assert stored.status == RunStatus.SUCCESS
    assert len(stored.api_notes) == 1
    assert (
        "'cancelled' for a run that had already finished as 'success'"
        in (stored.api_notes[0]["message"])
    )


def test_a_cancel_that_leaves_the_run_working_is_recorded_and_shown(
    catalog, api, operator, operator_client
):
    run = make_run(catalog.workflow, api=api)

    def still_running(request):
        if request.method == "PATCH":
            body = dict(api.runs[str(run.cyberdesk_id)], status="running")
            return httpx.Response(200, json=body)
        return None

    api.on_request = still_running
    run_cancel(run=run, user=operator)

    stored = Run.objects.get(pk=run.pk)
    assert stored.status == RunStatus.RUNNING
    assert stored.api_notes[0]["action"] == "cancel"
    assert "may keep working" in stored.api_notes[0]["message"]
    page = operator_client.get(reverse("run_detail", args=[run.pk]))
    assert b"Cyberdesk answered something unexpected" in page.content
    assert b"may keep working" in page.content


def test_an_expected_cancel_records_no_note(catalog, api, operator):
    run = make_run(catalog.workflow, api=api)
    run_cancel(run=run, user=operator)
    stored = Run.objects.get(pk=run.pk)
    assert stored.status == RunStatus.CANCELLED
    assert stored.api_notes == []
    assert [json.loads(r.content) for r in api.requests if r.method == "PATCH"] == [
        {"status": "cancelled"}
    ]
