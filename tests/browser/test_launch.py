"""Launching, the way an operator does it: the launch form, the run page that updates by
itself, and what happens on a bad input, a double click and a cancel."""

import re
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from launcher.models import Run, Workflow
from launcher.sandbox import models as sandbox_models
from launcher.sandbox.seed import WORKFLOW_ELIGIBILITY
from launcher.services.prompts import prompt_version_create
from launcher.services.workflows import workflows_sync
from tests.browser.conftest import READER_TIME_ZONE, log_in

pytestmark = pytest.mark.django_db(transaction=True)

ELIGIBILITY = "Check insurance eligibility"
INVOICE = "Reconcile invoice totals"
RUN_PAGE = re.compile(r"/runs/\d+/$")
# Sandbox seconds (journeys run at SANDBOX_TIME_SCALE 0.5, jitter ±20%): past any scheduling
# phase but inside every running phase; and past any whole run.
PAST_SCHEDULING = 2.0
PAST_THE_END = 60.0


def _status(page):
    return page.get_by_role("region", name="Status").get_by_role("status")


def _fill_eligibility(page, *, date_of_birth="1990-01-02"):
    page.get_by_label("Workflow").select_option(label=ELIGIBILITY)
    page.get_by_label("patient_name").fill("Ada Lovelace")
    page.get_by_label("date_of_birth").fill(date_of_birth)
    page.get_by_label("payer").select_option("Cigna")


def _watch_layout_shifts(page) -> None:
    """Sum the page's layout shifts from now on (Chromium's Layout Instability API)."""
    page.evaluate(
        """() => {
            window.layoutShiftScore = 0;
            new PerformanceObserver((list) => {
                for (const entry of list.getEntries()) window.layoutShiftScore += entry.value;
            }).observe({ type: "layout-shift" });
        }"""
    )


def test_a_pinned_version_and_a_chosen_model_run_to_success_without_a_reload(
    page, sandbox, sandbox_clock, operator
):
    workflows_sync()
    version = prompt_version_create(
        workflow=Workflow.objects.get(pk=WORKFLOW_ELIGIBILITY),
        text="Look up {patient_name} ({date_of_birth}) at {payer}; report the plan and copay.",
        note="shorter",
    )
    log_in(page, operator.username)

    _fill_eligibility(page)
    page.get_by_label("Model").select_option(label="Claude Opus 4.1")
    page.get_by_label("Prompt").select_option(label="v1 — shorter")
    expect(page.get_by_role("heading", name=re.compile("Prompt preview — v1"))).to_be_visible()
    page.get_by_role("button", name="Launch run").click()

    page.wait_for_url(RUN_PAGE)
    loads = []
    page.on("load", lambda _: loads.append(page.url))
    # The sandbox's clock is held: each phase lasts until the test moves it on.
    expect(_status(page)).to_contain_text("Scheduling")
    sandbox_clock.advance(PAST_SCHEDULING)
    expect(_status(page)).to_contain_text("Running", timeout=10_000)
    sandbox_clock.advance(PAST_THE_END)
    expect(_status(page)).to_contain_text("Success", timeout=10_000)
    assert loads == [], "the status changed without reloading the page"
    expect(page.locator("#live-announcer")).to_have_text(re.compile(r"^Run \d+: Success$"))
    run = Run.objects.get()
    created = page.get_by_role("region", name="Status").locator("time").first
    expect(created).to_have_attribute("datetime", run.created_at.isoformat())
    local = run.created_at.astimezone(ZoneInfo(READER_TIME_ZONE))
    expect(created).to_contain_text(local.strftime("%-I:%M"))
    expect(created).to_contain_text(re.compile(r"now|seconds? ago"))
    details = page.get_by_role("region", name="Details")
    expect(details).to_contain_text("Claude Opus 4.1")
    expect(details).to_contain_text("v1 (pinned)")
    # The sandbox names the hash of the prompt it received: the pinned version's text.
    expect(page.get_by_role("region", name="Output data")).to_contain_text(version.sha256)


def test_a_bad_input_shows_its_message_next_to_the_field_and_keeps_the_rest(
    page, sandbox, operator
):
    log_in(page, operator.username)

    # A date field is <input type="date"> (issue 14): the browser takes only dates, so the
    # bad input here is a required date left empty.
    _fill_eligibility(page, date_of_birth="")
    page.get_by_label("Model").select_option(label="Claude Opus 4.1")
    page.get_by_role("button", name="Launch run").click()

    date_field = page.get_by_label("date_of_birth")
    expect(date_field).to_have_attribute("aria-invalid", "true")
    expect(date_field).to_have_accessible_description(re.compile("required", re.IGNORECASE))
    expect(date_field).to_be_focused()  # the first bad field
    expect(page.get_by_label("patient_name")).to_have_value("Ada Lovelace")
    expect(page.get_by_label("payer")).to_have_value("Cigna")
    expect(page.get_by_label("Model").locator("option:checked")).to_have_text("Claude Opus 4.1")
    assert page.url.endswith("/"), "the form stays on the launch page"
    assert Run.objects.count() == 0


def test_a_double_click_on_launch_run_starts_one_run(page, sandbox, operator):
    log_in(page, operator.username)
    _fill_eligibility(page)

    page.get_by_role("button", name="Launch run").dblclick()

    page.wait_for_url(RUN_PAGE)
    expect(_status(page)).to_be_visible()
    assert Run.objects.count() == 1
    assert sandbox_models.Run.objects.count() == 1


def test_an_operator_cancels_a_running_run_and_polling_never_moves_the_page(
    page, sandbox, sandbox_clock, operator
):
    log_in(page, operator.username)
    page.get_by_label("Workflow").select_option(label=INVOICE)
    page.get_by_label("invoice_filename").fill("invoice-0042.pdf")
    page.get_by_label("invoice_total").fill("1250.50")
    page.get_by_label("line_item_count").fill("12")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(RUN_PAGE)
    expect(_status(page)).to_contain_text("Scheduling")

    sandbox_clock.advance(PAST_SCHEDULING)  # and it stays running until it is cancelled
    expect(_status(page)).to_contain_text("Running", timeout=10_000)
    _watch_layout_shifts(page)
    for _ in range(2):
        with page.expect_response(lambda response: response.url.endswith("/status")):
            pass
    assert page.evaluate("window.layoutShiftScore") == 0, "polling moved the page"
    page.get_by_role("button", name="Cancel").click()
    # It asks first (issue 14), in a dialog.
    page.get_by_role("dialog").get_by_role("button", name="Yes, cancel run").click()

    expect(_status(page)).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.locator("#run-status")).not_to_have_attribute("hx-trigger", re.compile("."))
    assert sandbox_models.Run.objects.get().status == "cancelled"
