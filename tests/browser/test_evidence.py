"""The evidence journey: launch a run, retry it, see both attempts (each with its timeline and
screenshots), and open Compare on the two attempts."""

import re

import pytest
from playwright.sync_api import expect

from launcher.models import Run, RunAttempt
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

ELIGIBILITY = "Check insurance eligibility"
RUN_PAGE = re.compile(r"/runs/\d+/$")


def _status(page):
    return page.get_by_role("region", name="Status").get_by_role("status")


def test_launch_retry_see_both_attempts_and_compare_them(page, sandbox, operator):
    # A confirmation step before Retry (if the page asks natively) is accepted.
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, operator.username)
    page.get_by_label("Workflow").select_option(label=ELIGIBILITY)
    page.get_by_label("patient_name").fill("Ada <b>Lovelace</b>")
    page.get_by_label("date_of_birth").fill("1990-01-02")
    page.get_by_label("payer").select_option("Cigna")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(RUN_PAGE)
    expect(_status(page)).to_contain_text(re.compile("Success|Task failed|Error"), timeout=20_000)

    # What the agent did: a timeline of steps with screenshots, inputs as a person reads them.
    timeline = page.get_by_role("region", name="Timeline")
    expect(timeline).to_contain_text("Ada <b>Lovelace</b>")  # escaped, shown as typed
    expect(timeline.get_by_role("img").first).to_be_visible()
    assert timeline.get_by_role("img").first.evaluate("img => img.naturalWidth") > 0
    expect(page.get_by_role("region", name="Usage")).to_contain_text("Agentic steps")
    expect(page.get_by_role("region", name="Inputs")).to_contain_text("Ada <b>Lovelace</b>")

    run = Run.objects.get()
    first_output = Run.objects.get(pk=run.pk).output_data
    page.get_by_role("button", name="Retry").click()
    # Retry asks first (issue 14): the dialog names the attempt it starts.
    page.get_by_role("dialog").get_by_role("button", name="Yes, start attempt 2").click()
    attempts = page.get_by_role("region", name="Attempts")
    expect(attempts.get_by_role("listitem")).to_have_count(2)
    expect(attempts).to_contain_text("Attempt 1 ·")
    expect(attempts).to_contain_text("Attempt 2 ·")
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text(f"Retried by {operator.username}: attempt 2 started")
    expect(history).to_contain_text(f"Launched by {operator.username}")
    loads = []
    page.on("load", lambda _: loads.append(page.url))
    expect(_status(page)).to_contain_text(re.compile("Success|Task failed|Error"), timeout=20_000)
    # The region's last render brings Attempts and History along (out of band), no reload.
    expect(attempts).to_contain_text(re.compile(r"Attempt 2 · (Success|Task failed|Error) ·"))
    expect(history).to_contain_text(
        re.compile(r"attempt 2\s+Status [A-Za-z ]+ → (Success|Task failed|Error)")
    )
    assert loads == []
    assert RunAttempt.objects.get(run=run).output_data == first_output

    # Attempt 1 keeps its own page with the same detail.
    attempts.get_by_role("link", name=re.compile("^Attempt 1 ·")).click()
    expect(page.get_by_role("heading", name=f"Run {run.pk} · attempt 1")).to_be_visible()
    expect(page.get_by_role("region", name="Timeline").get_by_role("img").first).to_be_visible()
    page.go_back()

    # Compare defaults to the previous attempt.
    page.get_by_role("link", name="Compare", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/runs/compare/\?a={run.pk}\.1&b={run.pk}$"))
    side_by_side = page.get_by_role("region", name="Side by side")
    expect(side_by_side).to_contain_text(f"Run {run.pk} · attempt 1")
    expect(side_by_side).to_contain_text(f"Run {run.pk} · attempt 2")
    expect(page.get_by_role("region", name="Prompt text")).to_contain_text("same prompt text")
    expect(page.get_by_role("region", name="Output data")).to_be_visible()
