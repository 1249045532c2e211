"""A matrix batch read to decide: run 2 models × 2 prompt versions, pick a baseline, open the
"By input row" view and follow a run — the way an operator answers "which is better?"."""

import re

import pytest
from django.db import connection
from playwright.sync_api import expect

from launcher.models import Batch, Workflow
from launcher.sandbox.seed import WORKFLOW_ELIGIBILITY
from launcher.services.prompts import prompt_version_create
from launcher.services.workflows import workflows_sync
from tests.browser.conftest import log_in, matrix_batch_preview

pytestmark = pytest.mark.django_db(transaction=True)

ELIGIBILITY = "Check insurance eligibility"


def test_a_matrix_batch_is_read_against_a_baseline_and_row_by_row(
    page, sandbox, operator, settings
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    if connection.vendor == "sqlite":
        settings.BATCH_CONCURRENCY = 1  # the in-memory test database takes one writer at a time
    workflows_sync()
    eligibility = Workflow.objects.get(pk=WORKFLOW_ELIGIBILITY)
    first = prompt_version_create(
        workflow=eligibility, text="Check {patient_name} at {payer}.", note="short"
    )
    prompt_version_create(
        workflow=eligibility,
        text="Check {patient_name}, born {date_of_birth}, at {payer}.",
        note="with birth date",
        based_on=first,
    )
    log_in(page, operator.username)

    # Run the matrix: 2 models × 2 versions × 3 rows.
    page.goto("/batches/new")
    matrix_batch_preview(page, versions=("v1 — short", "v2 — with birth date"))
    page.get_by_role("button", name="Launch 12 runs").click()
    expect(page.get_by_role("region", name="Progress").get_by_role("status")).to_contain_text(
        "12 of 12 finished (100%)", timeout=30_000
    )

    # The grid fills in by itself once the batch is done: four cells, each with its interval.
    region = page.get_by_role("region", name="Comparison")
    grid = region.get_by_role("table", name="Comparison")
    expect(grid.locator("tbody tr")).to_have_count(4)
    expect(grid.locator("tbody tr").first).to_contain_text("(3/3)")
    expect(grid.locator("tbody tr").first).to_contain_text("44–100%")  # Wilson, 3/3
    expect(region).not_to_have_attribute("hx-trigger", re.compile("."))

    # Pick a baseline: Sonnet with v2. Its row says so, the others are compared with it.
    page.get_by_label("Baseline").select_option(label="Claude Sonnet 4.5 · v2")
    page.get_by_role("button", name="Compare with this baseline").click()
    baseline_row = grid.locator("tbody tr").filter(has_text="Claude Sonnet 4.5 · v2")
    expect(baseline_row).to_contain_text("Baseline")
    expect(page).to_have_url(re.compile(r"\?baseline="))
    other = grid.locator("tbody tr").filter(has_text="Claude Opus 4.1 · v1")
    expect(other).to_contain_text("no significant difference")  # 3/3 against 3/3

    # By input row: three rows × four cells, each entry a link to its run.
    page.get_by_role("link", name="By input row").click()
    rows = page.get_by_role("table", name="Runs by input row")
    expect(rows.locator("tbody tr")).to_have_count(3)
    expect(rows.locator("thead th")).to_contain_text(["Row", "Inputs"])
    expect(rows.locator("thead")).to_contain_text("(baseline)")
    expect(rows.locator("tbody tr").first).to_contain_text("patient_name=Ada Lovelace")
    expect(rows.get_by_role("link", name=re.compile(r"^Run \d+: Success"))).to_have_count(12)
    compare = rows.get_by_role("link", name="Compare row 1")
    expect(compare).to_have_attribute("href", re.compile(r"^/runs/compare/\?a=\d+&b=\d+$"))
    expect(page).to_have_url(re.compile(r"view=rows"))
    # A row's runs side by side on the compare page, then back to the rows.
    compare.click()
    expect(page.get_by_role("heading", name="Compare runs", level=1)).to_be_visible()
    expect(page).to_have_url(re.compile(r"/runs/compare/\?a=\d+&b=\d+$"))
    page.go_back()
    expect(rows.locator("tbody tr")).to_have_count(3)

    # Only the rows where the cells differ: none here, every run succeeded.
    page.get_by_role("link", name="Only rows where the cells differ").click()
    expect(rows).to_contain_text("Every row's runs ended the same way.")
    expect(page).to_have_url(re.compile(r"differ=1"))
    page.get_by_role("link", name="Show every row").click()
    expect(rows.locator("tbody tr")).to_have_count(3)

    # Each column heading is the runs list of that cell; each entry opens its run.
    heading = rows.locator("thead").get_by_role("link", name="Claude Opus 4.1 · v1")
    expect(heading).to_have_attribute(
        "href", re.compile(r"^/runs/\?batch=\d+&model=.+&prompt=\d+$")
    )
    rows.get_by_role("link", name=re.compile(r"^Run \d+: Success")).first.click()
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    assert Batch.objects.get().runs.count() == 12
