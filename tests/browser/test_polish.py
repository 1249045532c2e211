"""Journeys of issue 14, as a new operator tries them in Chromium: an upload with bad rows that
launches with one click, a batch form that follows the Workflow picker, focus that survives live
updates, confirmations of destructive actions, and a keyboard-only launch → cancel → retry."""

import json
import re

import pytest
from django.db import connection
from playwright.sync_api import expect

from launcher.models import Batch, Run
from launcher.sandbox import models as sandbox_models
from launcher.sandbox.seed import WORKFLOW_HELLO, WORKFLOW_REPORT
from launcher.services.workflows import workflows_sync
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

REPORT = "Export monthly report"
ELIGIBILITY = "Check insurance eligibility"
HELLO = "Open Notepad and say hello"


def _batch_form_for(page, label: str, workflow_id) -> None:
    """Pick a workflow on the batch form and wait until the form has been redrawn for it (the
    picker redraws the whole form: a control touched before that would be replaced)."""
    page.get_by_label("Workflow").select_option(label=label)
    expect(page.get_by_role("link", name="CSV template")).to_have_attribute(
        "href", re.compile(f"workflow={workflow_id}")
    )


RUN_PAGE = re.compile(r"/runs/\d+/$")
BATCH_PAGE = re.compile(r"/batches/\d+/$")


@pytest.fixture
def immediate_worker(settings):
    """The worker's job (sending a batch's runs) runs in the request that plans the batch."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    if connection.vendor == "sqlite":
        settings.BATCH_CONCURRENCY = 1  # in-memory SQLite: one writer at a time


def _focused(page) -> str:
    """What has focus: its tag, id and text (e.g. 'BUTTON#run-cancel Cancel'), or 'BODY'."""
    return page.evaluate(
        """() => { const el = document.activeElement;
                   if (!el || el === document.body) return "BODY";
                   const text = el.innerText || el.value || el.getAttribute("aria-label");
                   return el.tagName + (el.id ? "#" + el.id : "") + " " + (text || "").trim(); }"""
    )


def _tab_to(page, pattern: str, *, limit: int = 80) -> None:
    """Press Tab until the focused element matches `pattern`; focus never on <body> meanwhile
    (after the first press)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = _focused(page)
        assert focused != "BODY", "focus fell to <body>"
        if re.search(pattern, focused):
            return
    raise AssertionError(f"never reached {pattern!r} with Tab")


def _never_body_for(page, milliseconds: int) -> None:
    for _ in range(milliseconds // 250):
        page.wait_for_timeout(250)  # the browser's own polls run meanwhile; we only watch
        assert _focused(page) != "BODY", "focus fell to <body>"


def test_an_upload_with_bad_rows_launches_with_one_click_after_its_preview(
    page, sandbox, operator, immediate_worker
):
    good = [{"month": "March", "year": 2025}, {"month": "April", "year": 2025}]
    bad = [{"month": "Smarch", "year": 2025}] * 4 + [{"month": "May", "year": 1999}] * 3
    rows = "\n".join(json.dumps(row) for row in good + bad) + "\n"
    log_in(page, operator.username)
    page.goto("/batches/new")
    page.get_by_label("Workflow").select_option(label=REPORT)
    expect(page.get_by_role("heading", name="Expected columns")).to_be_visible()
    expect(page.locator(".column-list")).to_contain_text("month")

    page.get_by_label("Upload rows").set_input_files(
        files=[{"name": "rows.jsonl", "mimeType": "application/x-ndjson", "buffer": rows.encode()}]
    )
    page.get_by_role("button", name="Preview", exact=True).click()
    expect(page.get_by_role("heading", name="Preview: 2 runs")).to_be_visible()
    expect(page.get_by_role("table", name="Bad rows").locator("tbody tr")).to_have_count(7)
    expect(page.get_by_role("table", name="Bad rows")).to_contain_text('"Smarch"')
    page.get_by_role("button", name="Launch 2 runs").click()

    page.wait_for_url(BATCH_PAGE)  # one click: no second preview
    assert Batch.objects.get().runs.count() == 2


def test_the_batch_form_follows_the_workflow_picker_without_pressing_choose(
    page, sandbox, operator
):
    log_in(page, operator.username)
    page.goto("/batches/new")
    picker = page.get_by_label("Workflow")
    picker.select_option(label=ELIGIBILITY)
    expect(page.locator(".column-list")).to_contain_text("patient_name")
    picker.select_option(label=REPORT)  # no "Choose workflow"
    expect(page.locator(".column-list")).to_contain_text("month")

    page.get_by_label("Rows", exact=True).fill("month,year\nMarch,2025\n")
    page.get_by_role("button", name="Preview", exact=True).click()

    expect(page.get_by_role("heading", name="Preview: 1 run")).to_be_visible()
    expect(page.get_by_label("Workflow")).to_have_value(re.compile(".+"))
    assert page.get_by_label("Workflow").evaluate("el => el.selectedOptions[0].text") == REPORT
    runs = page.get_by_role("table", name="Runs it will create")
    expect(runs).to_contain_text('"month": "March"')


def test_the_rows_panel_or_the_number_of_runs_panel_shows_as_chosen(page, sandbox, operator):
    log_in(page, operator.username)
    page.goto("/batches/new")
    _batch_form_for(page, REPORT, WORKFLOW_REPORT)
    expect(page.get_by_label("Rows", exact=True)).to_be_visible()
    expect(page.get_by_label("Number of runs")).to_be_hidden()

    page.get_by_label("A number of identical runs").check()

    expect(page.get_by_label("Number of runs")).to_be_visible()
    expect(page.get_by_label("Rows", exact=True)).to_be_hidden()


def test_focus_on_cancel_survives_the_status_poll(page, sandbox, operator, settings):
    settings.SANDBOX_TIME_SCALE = 20.0  # it keeps running for the whole test
    log_in(page, operator.username)
    page.get_by_label("Workflow").select_option(label=HELLO)
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(RUN_PAGE)
    cancel = page.get_by_role("button", name="Cancel", exact=True)
    cancel.focus()

    for _ in range(2):  # two polls swap the status region in
        with page.expect_response(lambda response: response.url.endswith("/status")):
            pass
    page.wait_for_timeout(100)

    assert _focused(page) == "BUTTON#run-cancel Cancel"


def test_a_launch_with_errors_puts_focus_on_the_first_bad_field(page, sandbox, operator):
    log_in(page, operator.username)
    page.get_by_label("Workflow").select_option(label=REPORT)
    expect(page.get_by_label("Year")).to_be_visible()
    page.get_by_label("Year").fill("1999")

    page.get_by_role("button", name="Launch run").click()

    expect(page.locator("#launch-form .has-error").first).to_be_visible()
    first_bad = page.locator("#launch-form .has-error").first.locator("input, select, textarea")
    expect(first_bad).to_be_focused()
    assert Run.objects.count() == 0


def test_cancel_the_rest_asks_first_and_keep_changes_nothing(
    page, sandbox, operator, settings, immediate_worker
):
    settings.SANDBOX_TIME_SCALE = 20.0
    log_in(page, operator.username)
    page.goto("/batches/new")
    _batch_form_for(page, HELLO, WORKFLOW_HELLO)
    page.get_by_label("A number of identical runs").check()
    page.get_by_label("Number of runs").fill("3")
    page.get_by_role("button", name="Preview", exact=True).click()
    page.get_by_role("button", name="Launch 3 runs").click()
    page.wait_for_url(BATCH_PAGE)

    page.get_by_role("button", name="Cancel the rest").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Cancel the rest of")
    expect(dialog).to_contain_text("Cyberdesk stops 3 runs still active")
    dialog.get_by_role("link", name="Keep the batch going").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel the rest")).to_be_focused()
    assert not Run.objects.filter(status="cancelled").exists()

    page.get_by_role("button", name="Cancel the rest").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel 3 runs").click()

    progress = page.get_by_role("region", name="Progress")
    expect(progress).to_contain_text("This batch was cancelled", timeout=20_000)
    expect(progress.locator(".badge.lifecycle-cancelled")).to_have_text("Cancelled")
    expect(page.locator("#messages")).not_to_contain_text("Batch planned")
    assert _focused(page) != "BODY"


def test_cancel_selected_on_the_runs_list_asks_first(page, sandbox, operator, settings):
    settings.SANDBOX_TIME_SCALE = 20.0
    log_in(page, operator.username)
    for _ in range(2):
        page.goto("/")
        page.get_by_label("Workflow").select_option(label=HELLO)
        page.get_by_role("button", name="Launch run").click()
        page.wait_for_url(RUN_PAGE)
    page.goto("/runs/")
    for checkbox in page.locator("#run-table input[type=checkbox][name=run]").all():
        checkbox.check()

    page.get_by_role("button", name="Cancel selected").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Cancel 2 runs?")
    dialog.get_by_role("button", name="Yes, cancel 2 runs").click()

    expect(page.get_by_role("status").first).to_contain_text("Cancel requested for 2 run(s)")
    assert sandbox_models.Run.objects.filter(status="cancelled").count() == 2


def test_keyboard_only_launch_cancel_and_retry_never_drops_focus_to_body(
    page, sandbox, operator, settings
):
    settings.SANDBOX_TIME_SCALE = 20.0  # each attempt keeps running until we act
    workflows_sync()
    log_in(page, operator.username)

    _tab_to(page, r"^SELECT#id_workflow")
    page.keyboard.type("Open Notepad")  # the picker's type-ahead chooses the workflow
    expect(page.get_by_label("Workflow")).to_have_value(str(WORKFLOW_HELLO))
    expect(page.get_by_text("This workflow takes no inputs.")).to_be_visible()
    assert _focused(page).startswith("SELECT#id_workflow")  # the refresh kept focus
    _tab_to(page, r"^BUTTON.* Launch run$")
    page.keyboard.press("Enter")
    page.wait_for_url(RUN_PAGE)

    _tab_to(page, r"^BUTTON#run-cancel Cancel$")
    _never_body_for(page, 2500)  # a poll or more
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    assert "Keep it running" in _focused(page)
    _tab_to(page, r"Yes, cancel run")
    page.keyboard.press("Enter")
    expect(page.locator("#run-status .badge").first).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Retry")).to_be_focused()

    page.keyboard.press("Enter")
    expect(dialog).to_contain_text("Retry starts attempt 2 of this run; attempt 1's results stay")
    _tab_to(page, r"Yes, start attempt 2")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_focused()
    _never_body_for(page, 2500)
    assert Run.objects.get().attempt == 2
