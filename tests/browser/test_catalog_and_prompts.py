"""What staff and prompt editors change reaches the operator's launch form."""

import pytest
from playwright.sync_api import expect

from launcher.models import PromptVersion, Workflow
from launcher.sandbox.seed import WORKFLOW_ELIGIBILITY
from launcher.services.prompts import prompt_version_create
from launcher.services.workflows import workflows_sync
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

ELIGIBILITY = "Check insurance eligibility"


def _model_names(page) -> list[str]:
    return page.get_by_label("Model").locator("option").all_inner_texts()


def test_a_model_staff_disables_leaves_the_picker(page, sandbox, staff):
    log_in(page, staff.username)
    page.goto("/")
    assert "Claude Opus 4.1" in _model_names(page)

    page.get_by_role("link", name="Models").click()
    opus = page.get_by_role("row", name="Claude Opus 4.1")
    opus.get_by_role("button", name="Disable Claude Opus 4.1").click()
    expect(opus.get_by_role("button", name="Enable Claude Opus 4.1")).to_be_visible()

    page.get_by_role("link", name="Launch", exact=True).click()
    expect(page.get_by_label("Model")).to_be_visible()
    names = _model_names(page)
    assert "Claude Opus 4.1" not in names
    assert "Claude Sonnet 4.5" in names


def test_a_prompt_editor_saves_a_new_version_in_the_admin_and_it_is_offered_as_latest(
    page, sandbox, prompt_editor
):
    workflows_sync()
    first = prompt_version_create(
        workflow=Workflow.objects.get(pk=WORKFLOW_ELIGIBILITY),
        text="Check eligibility for {patient_name} at {payer}.",
        note="first draft",
    )
    log_in(page, prompt_editor.username)

    page.goto(f"/admin/launcher/promptversion/{first.pk}/change/")
    page.get_by_role("link", name="Edit (save as new version)").click()
    page.get_by_label("Prompt text").fill(
        "Check eligibility for {patient_name}, born {date_of_birth}, at {payer}."
    )
    page.get_by_label("Note").fill("asks for the date of birth")
    page.get_by_role("button", name="Preview changes").click()
    expect(page.get_by_role("heading", name="Review: v1 → new version")).to_be_visible()
    page.get_by_role("button", name="Save as new version").click()
    expect(page.get_by_text(f"Saved v2 of {ELIGIBILITY}.")).to_be_visible()
    assert PromptVersion.objects.filter(workflow_id=WORKFLOW_ELIGIBILITY).count() == 2

    page.goto("/")
    page.get_by_label("Workflow").select_option(label=ELIGIBILITY)
    prompt = page.get_by_label("Prompt")
    expect(prompt.get_by_role("option", name="Latest (v2)")).to_be_attached()
    prompt.select_option(label="Latest (v2)")
    expect(page.get_by_role("heading", name="Prompt preview — latest (v2)")).to_be_visible()
