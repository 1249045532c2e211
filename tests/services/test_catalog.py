"""The model catalog: sync rules, staleness, offering rules, who changed what."""

import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import CommandError, call_command

from launcher.cyberdesk import errors
from launcher.models import ModelOption, ModelOptionChange, Workflow
from launcher.selectors import CYBERDESK_DEFAULT, model_default_name, models_offered
from launcher.services.catalog import (
    model_set_enabled,
    model_set_prices,
    models_sync,
    models_sync_if_stale,
)
from tests.fake_cyberdesk import FakeCyberdesk

pytestmark = pytest.mark.django_db

SONNET = "3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
HAIKU = "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c"
EMBEDDER = "6a5f4e3d-2c1b-4a0f-9e8d-7c6b5a4f3e2d"
OLD = "7b6a5f4e-3d2c-4b1a-8f9e-8d7c6b5a4f3e"


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


@pytest.fixture
def catalog(api):
    api.add_model(id=SONNET, name="Claude Sonnet", is_system_default=True)
    api.add_model(id=HAIKU, name="Claude Haiku", is_system_default=False)
    api.add_model(
        id=EMBEDDER, name="Text embedder", is_computer_use_model=False, is_system_default=False
    )
    api.add_model(id=OLD, name="Old model", is_archived=True, is_system_default=False)
    return api


def option(model_id) -> ModelOption:
    return ModelOption.objects.get(pk=model_id)


def test_new_computer_use_models_arrive_enabled_and_others_disabled(catalog):
    result = models_sync()
    assert sorted(result.created) == ["Claude Haiku", "Claude Sonnet", "Old model", "Text embedder"]
    assert option(SONNET).enabled and option(HAIKU).enabled
    assert not option(EMBEDDER).enabled
    sonnet = option(SONNET)
    assert (sonnet.provider, sonnet.model, sonnet.is_system_default) == (
        "anthropic",
        "claude-sonnet-4-5",
        True,
    )


def test_operators_are_offered_enabled_current_computer_use_models_only(catalog, staff):
    models_sync()
    model_set_enabled(model_option=option(HAIKU), enabled=False, user=staff)
    assert [m.name for m in models_offered()] == ["Claude Sonnet"]
    # Enabling a non-computer-use or archived model never offers it.
    model_set_enabled(model_option=option(EMBEDDER), enabled=True, user=staff)
    assert option(OLD).enabled
    assert [m.name for m in models_offered()] == ["Claude Sonnet"]


def test_a_model_archived_upstream_leaves_the_picker_at_the_next_sync(catalog):
    models_sync()
    assert "Claude Haiku" in [m.name for m in models_offered()]
    catalog.models[1]["is_archived"] = True
    result = models_sync()
    assert result.updated == ["Claude Haiku"]
    assert option(HAIKU).enabled and option(HAIKU).is_archived_upstream
    assert "Claude Haiku" not in [m.name for m in models_offered()]


def test_a_model_no_longer_listed_is_kept_but_never_offered(catalog):
    models_sync()
    catalog.models.pop(0)
    result = models_sync()
    assert result.gone == ["Claude Sonnet"]
    assert not option(SONNET).present_upstream
    assert "Claude Sonnet" not in [m.name for m in models_offered()]
    catalog.add_model(id=SONNET, name="Claude Sonnet")
    models_sync()
    assert option(SONNET).present_upstream


def test_a_sync_keeps_staff_choices_and_prices(catalog, staff):
    models_sync()
    model_set_enabled(model_option=option(SONNET), enabled=False, user=staff)
    model_set_prices(
        model_option=option(SONNET),
        input_per_million=Decimal("3"),
        output_per_million=Decimal("15"),
    )
    catalog.models[0]["description"] = "Now better"
    models_sync()
    sonnet = option(SONNET)
    assert not sonnet.enabled
    assert sonnet.description == "Now better"
    assert sonnet.price_output_per_million == Decimal("15")


def test_an_api_failure_changes_nothing(catalog):
    models_sync()
    catalog.fail_with = 503
    with pytest.raises(errors.CyberdeskError):
        models_sync()
    assert ModelOption.objects.count() == 4


def test_it_syncs_when_empty_or_older_than_the_max_age_only(catalog, settings):
    settings.MODEL_CATALOG_MAX_AGE_SECONDS = 600
    with time_machine.travel(datetime(2025, 6, 1, 12, 0, tzinfo=UTC), tick=False) as clock:
        assert models_sync_if_stale() is not None
        requests = len(catalog.requests)
        clock.shift(timedelta(minutes=9))
        assert models_sync_if_stale() is None
        assert len(catalog.requests) == requests
        clock.shift(timedelta(minutes=1))
        assert models_sync_if_stale() is not None
        assert len(catalog.requests) == requests + 1


def test_a_failed_automatic_sync_keeps_the_last_catalog(catalog):
    catalog.fail_with = 500
    assert models_sync_if_stale() is None
    assert ModelOption.objects.count() == 0


def test_every_enable_or_disable_is_recorded_with_who_and_when(catalog, staff):
    models_sync()
    model_set_enabled(model_option=option(SONNET), enabled=False, user=staff)
    model_set_enabled(model_option=option(SONNET), enabled=False, user=staff)  # no change
    model_set_enabled(model_option=option(SONNET), enabled=True, user=staff)
    changes = list(ModelOptionChange.objects.order_by("pk"))
    assert [(c.enabled, c.changed_by) for c in changes] == [(False, staff), (True, staff)]
    assert all(c.changed_at for c in changes)


def test_the_workflow_default_names_the_workflows_model_then_the_system_default(catalog):
    models_sync()
    workflow = Workflow.objects.create(
        id=uuid.uuid4(), name="W", model_metadata={"main_agent_model_id": HAIKU}
    )
    assert model_default_name(workflow) == "Claude Haiku"
    workflow.model_metadata = None
    assert model_default_name(workflow) == "Claude Sonnet"
    ModelOption.objects.update(is_system_default=False)
    assert model_default_name(workflow) == CYBERDESK_DEFAULT


def test_the_sync_models_command(catalog):
    out = io.StringIO()
    call_command("sync_models", stdout=out)
    assert "4 new" in out.getvalue()
    catalog.fail_with = 401
    with pytest.raises(CommandError, match="Could not sync the models"):
        call_command("sync_models")


# --- Against the real sandbox over HTTP ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_catalog_and_the_mirror_sync_from_the_sandbox(live_server, settings):
    from launcher.sandbox.seed import seed_demo_data
    from launcher.services.prompts import prompt_publish, prompt_version_create
    from launcher.services.workflows import workflow_refresh, workflows_sync

    settings.CYBERDESK_BASE_URL = live_server.url + "/sandbox"
    settings.CYBERDESK_API_KEY = settings.SANDBOX_API_KEY
    seed_demo_data()

    result = models_sync()
    assert result.created and ModelOption.objects.count() == len(result.created)
    offered = list(models_offered())
    assert offered and all(m.is_computer_use and not m.is_archived_upstream for m in offered)
    archived = ModelOption.objects.filter(is_archived_upstream=True)
    assert archived.exists() and not set(archived) & set(offered)

    workflows = workflows_sync()
    assert len(workflows) >= 5
    workflow = next(w for w in workflows if w.name == "Check insurance eligibility")
    assert "patient_name" in workflow.input_schema["properties"]

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    publisher = get_user_model().objects.create_user("pia", password="pw")
    publisher.user_permissions.add(
        Permission.objects.get(content_type__app_label="launcher", codename="change_workflow")
    )
    version = prompt_version_create(workflow=workflow, text="Published {patient_name}")
    prompt_publish(version=version, user=get_user_model().objects.get(pk=publisher.pk))
    assert workflow_refresh(workflow).main_prompt == "Published {patient_name}"
