"""Launch again is exact: a run launched with the workflow's stored prompt records the text
Launcher saw, and "same prompt" sends exactly that text later, pinned, even after the workflow's
prompt changed; "same model" keeps the model id, or says why it cannot."""

import uuid

import pytest
from django.urls import reverse

from launcher.models import PromptVersion, Run
from launcher.services.runs import run_launch, run_launch_again
from tests.fake_cyberdesk import serve
from tests.launch_api import STORED_PROMPT

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def launch(catalog, operator, prompt="stored", model=None):
    return run_launch(
        user=operator,
        workflow=catalog.workflow,
        model_option=model,
        prompt_choice=prompt,
        input_values={"customer_id": "c-1", "age": 40},
        idempotency_key=uuid.uuid4(),
    )


def test_a_stored_prompt_run_records_the_text_it_was_launched_with(catalog, api, operator):
    run = launch(catalog, operator)
    assert "main_prompt" not in api.create_body()  # nothing sent: the workflow's own is used
    version = run.prompt_version
    assert version.text == STORED_PROMPT and version.imported_from_workflow
    assert "Imported from the workflow" in version.note
    # Deduplicated by hash: a second launch with the same stored prompt reuses the version.
    assert launch(catalog, operator).prompt_version_id == version.pk
    assert PromptVersion.objects.filter(workflow=catalog.workflow, text=STORED_PROMPT).count() == 1


def test_an_existing_version_with_the_same_text_is_reused(catalog, api, operator):
    catalog.workflow.main_prompt = catalog.v1.text  # v1 was published to the workflow
    catalog.workflow.save()
    assert launch(catalog, operator).prompt_version_id == catalog.v1.pk


def test_same_prompt_sends_the_recorded_text_after_the_workflows_prompt_changed(
    catalog, api, operator
):
    run = launch(catalog, operator)
    catalog.workflow.main_prompt = "A newer prompt published since."
    catalog.workflow.save()

    again = run_launch_again(Run.objects.select_related("workflow").get(pk=run.pk))

    assert again.initial["prompt"] == f"version:{run.prompt_version_id}"
    assert "stored prompt has changed since this run" in " ".join(again.notes)
    assert "recorded as v3" in again.same_description
    launch(catalog, operator, prompt=again.initial["prompt"])
    assert api.create_body()["main_prompt"] == STORED_PROMPT  # the old text, pinned


def test_the_pages_say_when_the_stored_prompt_changed(catalog, api, operator, operator_client):
    run = launch(catalog, operator)
    catalog.workflow.main_prompt = "A newer prompt published since."
    catalog.workflow.save()
    launch_page = operator_client.get(reverse("launch"), {"again": run.pk}).content.decode()
    assert "The workflow&#x27;s stored prompt has changed since this run" in launch_page
    run_page = operator_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "stored prompt has changed since this run" in run_page


def test_same_model_keeps_the_id_or_says_it_is_no_longer_offered(catalog, api, operator):
    run = launch(catalog, operator, model=catalog.model)
    again = run_launch_again(Run.objects.select_related("workflow").get(pk=run.pk))
    assert again.initial["model"] == str(catalog.model.pk) and again.notes == []
    catalog.model.enabled = False
    catalog.model.save()
    again = run_launch_again(Run.objects.select_related("workflow").get(pk=run.pk))
    assert again.initial["model"] == ""
    assert f"Claude Sonnet ({catalog.model.pk}) is no longer offered" in again.notes[0]
