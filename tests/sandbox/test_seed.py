"""Demo data: idempotent, and covering every input type the launcher must render."""

import json

import pytest
from django.core.management import call_command

from launcher.sandbox import seed
from launcher.sandbox.models import ModelConfiguration, Scenario, Tag, Workflow

pytestmark = pytest.mark.django_db


def test_seeding_twice_creates_nothing_new(db, capsys):
    call_command("seed_sandbox")
    counts = (Workflow.objects.count(), ModelConfiguration.objects.count(), Tag.objects.count())

    call_command("seed_sandbox")

    assert counts == (6, 8, 5)
    assert (Workflow.objects.count(), ModelConfiguration.objects.count(), Tag.objects.count()) == (
        counts
    )
    assert "created 0 model configurations, 0 tags, 0 workflows" in capsys.readouterr().out


def test_seeding_keeps_changes_unless_reset(demo):
    Workflow.objects.filter(pk=seed.WORKFLOW_HELLO).update(main_prompt="Published from Launcher")

    seed.seed_demo_data()
    kept = Workflow.objects.get(pk=seed.WORKFLOW_HELLO).main_prompt
    seed.seed_demo_data(reset=True)

    assert kept == "Published from Launcher"
    assert Workflow.objects.get(pk=seed.WORKFLOW_HELLO).main_prompt.startswith("Open Notepad")


def test_the_demo_covers_every_input_type_and_scenario(demo):
    properties = {}
    prompts = ""
    for workflow in Workflow.objects.all():
        schema = json.loads(workflow.input_schema or "{}")
        properties.update(schema.get("properties", {}))
        prompts += workflow.main_prompt
    types = {prop.get("type") for prop in properties.values()}

    assert {"string", "number", "integer", "boolean", "array"} <= types
    assert any("enum" in prop for prop in properties.values())
    assert any(prop.get("items", {}).get("type") == "string" for prop in properties.values())
    assert any(name.startswith("$") for name in properties)
    assert "{$" in prompts
    assert any("minimum" in prop and "maximum" in prop for prop in properties.values())
    assert set(Workflow.objects.values_list("scenario", flat=True)) == set(Scenario.values)
    assert Workflow.objects.filter(includes_file_exports=True).exists()
    assert Workflow.objects.exclude(post_run_checks=[]).count() >= 2
    assert Workflow.objects.filter(is_webhooks_enabled=True).exists()
