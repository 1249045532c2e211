"""The runs list and matrix batches: pages that follow many runs at once."""

import re
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from launcher.models import Batch, Run, Workflow
from launcher.sandbox.seed import WORKFLOW_ELIGIBILITY, WORKFLOW_HELLO
from launcher.services.prompts import prompt_version_create
from launcher.services.runs import run_launch
from launcher.services.workflows import workflows_sync
from tests.browser.conftest import log_in, matrix_batch_preview

pytestmark = pytest.mark.django_db(transaction=True)

ELIGIBILITY = "Check insurance eligibility"
PATIENT = {"patient_name": "Ada Lovelace", "date_of_birth": "1990-01-02", "payer": "Cigna"}


def _launch(user, workflow_id, input_values) -> Run:
    return run_launch(
        user=user,
        workflow=Workflow.objects.get(pk=workflow_id),
        model_option=None,
        prompt_choice="stored",
        input_values=input_values,
        sensitive_input_values={},
        file_inputs=[],
        idempotency_key=uuid.uuid4(),
    )


def _is_table_poll(request) -> bool:
    return request.headers.get("hx-request") == "true" and "/runs/" in request.url


def test_the_runs_list_updates_statuses_by_itself_and_stops_polling_when_all_are_finished(
    page, sandbox, operator, settings
):
    """Server time is frozen and moved by hand (the sandbox runs on it); the browser's clock is
    faked too, so every poll is one we asked for and none can hide in the gaps."""
    settings.SANDBOX_TIME_SCALE = 1.0  # scheduling 1.6–2.4 s, then running until ≥ 4.8 s
    workflows_sync()
    with time_machine.travel(timezone.now(), tick=False) as server_clock:
        runs = [
            _launch(operator, WORKFLOW_ELIGIBILITY, PATIENT),
            _launch(operator, WORKFLOW_ELIGIBILITY, {**PATIENT, "payer": "Aetna"}),
            _launch(operator, WORKFLOW_HELLO, {}),
        ]
        page.clock.install()
        log_in(page, operator.username)
        page.goto("/runs/")
        polls = []
        page.on(
            "request", lambda request: polls.append(request) if _is_table_poll(request) else None
        )
        loads = []
        page.on("load", lambda _: loads.append(page.url))

        statuses = page.get_by_role("table").locator("tbody tr td:nth-child(3)")
        expect(statuses).to_have_text(["Scheduling"] * 3)
        table = page.locator("#run-table")
        expect(table).to_have_attribute("hx-trigger", "every 3s")

        server_clock.shift(timedelta(seconds=3))
        with page.expect_response(lambda response: _is_table_poll(response.request)):
            page.clock.run_for(3_000)
        expect(statuses).to_have_text(["Running"] * 3)
        expect(table).to_have_attribute("hx-trigger", "every 3s")

        server_clock.shift(timedelta(seconds=20))
        with page.expect_response(lambda response: _is_table_poll(response.request)):
            page.clock.run_for(3_000)
        expect(statuses).to_have_text(["Success"] * 3)
        # Read out for screen readers, newest run first, as the rows are.
        expect(page.locator("#live-announcer")).to_have_text(
            ". ".join(f"Run {run.pk}: Success" for run in reversed(runs))
        )
        expect(table).not_to_have_attribute("hx-trigger", re.compile("."))
        assert len(polls) == 2

        # A minute later (by the page's clock): not one more request.
        page.clock.run_for(60_000)
        page.evaluate("1")  # a round trip, so any request sent meanwhile has been reported
        assert len(polls) == 2
    assert loads == []
    assert {run.status for run in Run.objects.filter(pk__in=[run.pk for run in runs])} == {
        "success"
    }


def test_a_matrix_batch_reaches_100_percent_and_shows_the_comparison_grid(
    page, sandbox, operator, settings
):
    # The worker's job (sending the batch's runs) runs in the request that plans the batch.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    if connection.vendor == "sqlite":
        # The in-memory SQLite test database (shared cache) answers two writers at once with
        # "table is locked" straight away; the file database `make run` uses waits its turn.
        settings.BATCH_CONCURRENCY = 1
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

    page.get_by_role("link", name="Batches").click()
    page.get_by_role("link", name="New batch").click()
    matrix_batch_preview(page, versions=("v1 — short", "v2 — with birth date"))
    expect(page.get_by_role("heading", name="Preview: 12 runs")).to_be_visible()
    page.get_by_role("button", name="Launch 12 runs").click()

    progress = page.get_by_role("region", name="Progress")
    expect(progress.get_by_role("status")).to_contain_text(
        "12 of 12 finished (100%)", timeout=20_000
    )
    bar = progress.get_by_role("progressbar", name="Runs finished")
    expect(bar).to_have_attribute("value", "12")
    expect(bar).to_have_attribute("max", "12")
    grid = page.get_by_role("table", name="Comparison")
    expect(grid.locator("tbody tr")).to_have_count(4)
    for model in ("Claude Opus 4.1", "Claude Sonnet 4.5"):
        for version in ("v1", "v2"):
            row = grid.locator("tbody tr").filter(has_text=model).filter(has_text=version)
            expect(row).to_have_count(1)
            expect(row).to_contain_text("100% (3/3)")
    expect(page.locator("#batch-progress")).not_to_have_attribute("hx-trigger", re.compile("."))
    batch = Batch.objects.get()
    assert batch.runs.count() == 12
    assert set(batch.runs.values_list("status", flat=True)) == {"success"}


def test_select_all_ticks_every_run_on_the_page_and_shows_a_partial_choice(page, sandbox, operator):
    workflows_sync()
    workflow = Workflow.objects.get(pk=WORKFLOW_HELLO)
    for _ in range(3):
        Run.objects.create(workflow=workflow, status="success", prompt_mode="stored")
    log_in(page, operator.username)
    page.goto("/runs/")

    select_all = page.get_by_role("checkbox", name="Select all runs on this page")
    rows = page.get_by_role("checkbox", name=re.compile(r"^Select run \d+$"))
    select_all.check()
    for index in range(3):
        expect(rows.nth(index)).to_be_checked()

    rows.nth(1).uncheck()
    assert select_all.evaluate("el => el.indeterminate") is True
    expect(select_all).not_to_be_checked()
    rows.nth(1).check()
    expect(select_all).to_be_checked()
    select_all.uncheck()
    for index in range(3):
        expect(rows.nth(index)).not_to_be_checked()
