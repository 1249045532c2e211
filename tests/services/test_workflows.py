"""The workflow mirror: sync, staleness, fetching one on demand, keeping it when the API fails."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command

from launcher.cyberdesk import errors
from launcher.models import Workflow
from launcher.services.workflows import (
    workflow_get_or_sync,
    workflow_refresh,
    workflows_sync,
    workflows_sync_if_stale,
)
from tests.cyberdesk.payloads import FALLBACK_MODEL_ID, MODEL_ID, WORKFLOW_ID
from tests.fake_cyberdesk import FakeCyberdesk

pytestmark = pytest.mark.django_db

OTHER_ID = "22222222-3333-4444-8555-666666666666"


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    fake.add_workflow()
    with fake.serve():
        yield fake


def test_a_sync_mirrors_every_workflow_field_launcher_uses(api):
    [workflow] = workflows_sync()
    assert str(workflow.pk) == WORKFLOW_ID
    assert workflow.name == "Download the monthly invoice"
    assert workflow.main_prompt.startswith("Log in to {portal}")
    assert workflow.input_schema["required"] == ["portal"]
    assert workflow.model_metadata == {
        "main_agent_model_id": MODEL_ID,
        "cache_detection_model_id": None,
        "fallback_model_1_id": FALLBACK_MODEL_ID,
        "fallback_model_2_id": None,
    }
    assert workflow.tags == ["finance"]
    assert workflow.last_run_errored is True
    assert workflow.has_post_run_checks is True
    assert workflow.upstream_updated_at is not None and workflow.synced_at is not None


def test_a_sync_updates_existing_rows_and_adds_new_ones(api):
    workflows_sync()
    api.workflows[WORKFLOW_ID]["name"] = "Renamed"
    api.add_workflow(id=OTHER_ID, name="Second", input_schema=None, model_metadata=None, tags=[])
    workflows_sync()
    assert Workflow.objects.get(pk=WORKFLOW_ID).name == "Renamed"
    second = Workflow.objects.get(pk=OTHER_ID)
    assert second.input_schema is None and second.model_metadata is None
    assert Workflow.objects.count() == 2


def test_it_keeps_the_last_mirror_when_the_api_is_down(api):
    workflows_sync()
    api.workflows[WORKFLOW_ID]["name"] = "Changed upstream"
    api.fail_with = 503
    with pytest.raises(errors.CyberdeskError):
        workflows_sync()
    calls = len(api.requests)
    assert workflows_sync_if_stale() is False  # still fresh: no call at all
    assert len(api.requests) == calls
    assert Workflow.objects.get(pk=WORKFLOW_ID).name == "Download the monthly invoice"


def test_it_syncs_only_when_empty_or_stale(api, settings):
    settings.WORKFLOW_MIRROR_MAX_AGE_SECONDS = 60
    with time_machine.travel(datetime(2025, 6, 1, 12, 0, tzinfo=UTC), tick=False) as clock:
        assert workflows_sync_if_stale() is True
        calls = len(api.requests)
        clock.shift(timedelta(seconds=30))
        assert workflows_sync_if_stale() is False
        assert len(api.requests) == calls
        clock.shift(timedelta(seconds=31))
        api.fail_with = 500
        assert workflows_sync_if_stale() is False  # failed: logged, the mirror stays
        assert Workflow.objects.count() == 1


def test_get_or_sync_reads_the_mirror_first(api):
    workflows_sync()
    calls = len(api.requests)
    assert str(workflow_get_or_sync(WORKFLOW_ID).pk) == WORKFLOW_ID
    assert len(api.requests) == calls


def test_get_or_sync_fetches_a_workflow_not_mirrored_yet(api):
    workflow = workflow_get_or_sync(uuid.UUID(WORKFLOW_ID))
    assert workflow.name == "Download the monthly invoice"
    assert Workflow.objects.filter(pk=WORKFLOW_ID).exists()


@pytest.mark.parametrize("workflow_id", [OTHER_ID, "not-a-uuid"])
def test_get_or_sync_raises_does_not_exist_for_unknown_ids(api, workflow_id):
    with pytest.raises(Workflow.DoesNotExist):
        workflow_get_or_sync(workflow_id)


def test_refresh_fetches_one_workflow_again(api):
    workflow = workflow_get_or_sync(WORKFLOW_ID)
    api.workflows[WORKFLOW_ID]["main_prompt"] = "New stored prompt"
    assert workflow_refresh(workflow).main_prompt == "New stored prompt"


def test_the_sync_workflows_command(api, capsys):
    call_command("sync_workflows")
    assert "1 workflows synced" in capsys.readouterr().out
