"""Promote with evidence: a release manager opens the prompts page, presses "Promote to
production" on a version, reads the evidence (the batch's cells, rates, intervals and the test)
before anything moves, writes a reason, moves it, and the label history links the batch."""

import pytest
from playwright.sync_api import expect

from launcher.models import PromptLabel, Workflow
from launcher.sandbox.seed import WORKFLOW_ELIGIBILITY
from launcher.services.prompts import prompt_version_create
from launcher.services.workflows import workflows_sync
from tests.browser.conftest import _PROMPT_EDITOR_CODENAMES, _persona, log_in
from tests.services.test_promotion import make_batch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def release_manager(django_user_model):
    return _persona(
        django_user_model,
        "ana",
        [*_PROMPT_EDITOR_CODENAMES, "move_production_label"],
        is_staff=True,
    )


@pytest.fixture
def versions(sandbox):
    workflows_sync()
    workflow = Workflow.objects.get(pk=WORKFLOW_ELIGIBILITY)
    v1 = prompt_version_create(workflow=workflow, text=workflow.main_prompt, note="imported")
    v2 = prompt_version_create(
        workflow=workflow, text=workflow.main_prompt + "\nAnswer in one line.", note="shorter"
    )
    v3 = prompt_version_create(workflow=workflow, text="Untested {patient_name}", note="draft")
    PromptLabel.objects.create(workflow=workflow, name="production", version=v1)
    return workflow, v1, v2, v3


def test_promote_with_evidence(page, versions, release_manager):
    workflow, v1, v2, v3 = versions
    batch = make_batch(workflow, {v1: (17, 3), v2: (19, 1)})
    log_in(page, release_manager.username)
    page.goto(f"/prompts/{workflow.pk}/")

    # An untested version: the form says what is missing and nothing moves.
    page.locator("#v3").get_by_role("button", name="Promote to production").click()
    expect(page.get_by_role("heading", name="Move production to v3")).to_be_visible()
    expect(page.get_by_text("No finished batch has runs of v3")).to_be_visible()
    page.get_by_role("button", name="Move production to v3").click()
    expect(page.get_by_role("alert")).to_contain_text("production cannot move to v3 yet")
    page.get_by_role("link", name="Cancel").click()

    # v2 has a finished batch behind it: the evidence is shown before anything moves.
    page.locator("#v2").get_by_role("button", name="Promote to production").click()
    evidence = page.get_by_role("region", name="Evidence")
    expect(evidence.get_by_role("link", name=str(batch))).to_be_visible()
    expect(evidence).to_contain_text("19/20 = 95% (95% CI 76–99%)")
    expect(evidence).to_contain_text("17/20 = 85%")
    expect(evidence).to_contain_text("not significantly worse")
    expect(evidence).to_contain_text("Enough evidence")
    assert PromptLabel.objects.get(name="production").version == v1

    page.get_by_label("Reason").fill("fewer wrong plan names")
    page.get_by_role("button", name="Move production to v2").click()
    expect(page.get_by_text("production: v1 → v2.")).to_be_visible()
    history = page.locator(".label-history")
    expect(history).to_contain_text("production: v1 → v2")
    expect(history).to_contain_text("by ana")
    expect(history).to_contain_text("“fewer wrong plan names”")
    history.get_by_role("link", name=str(batch)).click()
    page.wait_for_url(f"**/batches/{batch.pk}/")
    assert PromptLabel.objects.get(name="production").version == v2
