"""The launch page's warning about a workflow (issue 14): it is the API's
`workflow_metadata.has_unaddressed_error`, so it says "Unaddressed error since …", links to that
run when Launcher launched it, and goes away when the API clears the error."""

import uuid
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from launcher.models import Workflow
from launcher.services.workflows import workflows_sync
from tests.cyberdesk.payloads import RUN_ID, WORKFLOW_ID
from tests.fake_cyberdesk import FakeCyberdesk
from tests.launch_api import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    fake = FakeCyberdesk()
    fake.add_workflow()
    with fake.serve():
        yield fake


def test_the_warning_says_since_when_and_links_to_our_run(api, operator_client):
    [workflow] = workflows_sync()
    run = make_run(workflow, cyberdesk_id=uuid.UUID(RUN_ID))

    html = operator_client.get(reverse("launch")).content.decode()

    assert workflow.last_error_at == datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
    assert "Unaddressed error since" in html and 'datetime="2025-05-01T09:00:00+00:00"' in html
    assert f'<a class="workflow-error-run" href="{reverse("run_detail", args=[run.pk])}">' in html
    assert "Last run errored" not in html


def test_an_error_of_a_run_launched_elsewhere_has_no_link(api, operator_client):
    workflows_sync()

    html = operator_client.get(reverse("launch")).content.decode()

    assert "Unaddressed error since" in html and "workflow-error-run" not in html


def test_the_warning_goes_when_the_api_clears_the_error(api, operator_client):
    workflows_sync()
    api.workflows[WORKFLOW_ID]["workflow_metadata"] = {
        "has_unaddressed_error": None,
        "last_errored_run_start": "2025-05-01T09:00:00Z",
        "last_errored_run_uuid": RUN_ID,
    }

    workflows_sync()

    workflow = Workflow.objects.get()
    assert (workflow.last_run_errored, workflow.last_error_at, workflow.last_error_run_id) == (
        False,
        None,
        None,
    )
    assert "Unaddressed error" not in operator_client.get(reverse("launch")).content.decode()
