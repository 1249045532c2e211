"""Screenshots of Launcher's main pages, at desktop and phone widths, into docs/screenshots/.

    make screenshots          # or: .venv/bin/python docs/screenshots/take.py

Nothing needs to be running: like the browser tests, this starts pytest-django's live server on
a throwaway test database, with the sandbox's demo data, and drives Debian's Chromium
(/usr/bin/chromium, or CHROMIUM_PATH) through Playwright. The pages are filled the way a person
fills them: runs are launched through the launch form and left to finish on their own.
A page with console errors or failed requests stops the script, as it fails a journey.
"""

import os
import re
import sys
import uuid
from pathlib import Path

# Playwright's sync API runs an event loop in this thread; the ORM calls between browser steps
# are plain synchronous code (the browser tests allow the same, for their package only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

if __name__ == "__main__":
    # Playwright's sync API runs an event loop in this thread, so Django would refuse the ORM
    # calls made between steps; the browser tests allow them for their package only
    # (tests/browser/conftest.py), and this script is nothing but browser steps.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # pytest runs this very file (it sets Django up first, then imports it as a test module).
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))

from playwright.sync_api import expect  # noqa: E402

# The browser tests' fixtures: Chromium, the live server pointed at the sandbox, a page that
# and closing the shared API client after the run.
from tests.browser.conftest import (  # noqa: E402, F401
    browser,
    log_in,
    matrix_batch_preview,
    sandbox_api,
)
from tests.conftest import _close_the_shared_api_client  # noqa: E402, F401

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

ELIGIBILITY = "Check insurance eligibility"
INVOICE = "Reconcile invoice totals"
TIMESHEET = "Submit weekly timesheet"


@pytest.fixture
def demo_data(sandbox_api, settings, django_user_model):  # noqa: F811
    from launcher.models import Workflow
    from launcher.sandbox.seed import WORKFLOW_ELIGIBILITY, seed_demo_data
    from launcher.services.prompts import prompt_label_move, prompt_version_create
    from launcher.services.workflows import workflows_sync

    settings.SANDBOX_TIME_SCALE = 0.5
    # The batch's sending job runs in the request that plans it (no worker here); one run at a
    # time, as the in-memory SQLite test database does not wait for a lock.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    settings.BATCH_CONCURRENCY = 1
    seed_demo_data()
    workflows_sync()
    user = django_user_model.objects.create_superuser("demo", "demo@example.com", "demo")
    eligibility = Workflow.objects.get(pk=WORKFLOW_ELIGIBILITY)
    first = prompt_version_create(
        workflow=eligibility,
        text=(
            "Check insurance eligibility for {patient_name} (born {date_of_birth}).\n"
            "Open the {payer} provider portal, search the member, and report the plan name,\n"
            "whether the coverage is active, and the copay."
        ),
        note="first version",
        author=user,
    )
    # The first version is what runs used until now: it becomes production by an override,
    # with its reason in the history (there is no batch behind it yet).
    prompt_label_move(
        workflow=eligibility,
        name="production",
        version=first,
        user=user,
        reason="the workflow's prompt until now",
        without_evidence=True,
    )
    # The demo batch has 6 runs per prompt version: enough evidence for this demo.
    settings.PROMOTION_MIN_RUNS = 6
    prompt_version_create(
        workflow=eligibility,
        text=(
            "Check insurance eligibility for {patient_name} (born {date_of_birth}).\n"
            "Open the {payer} provider portal and sign in as the clinic user.\n"
            "Search the member by name and date of birth, and report the plan name,\n"
            "whether the coverage is active, the copay and the deductible left."
        ),
        note="sign in first; report the deductible",
        author=user,
        based_on=first,
    )
    return user


def _shoot(page, name: str, *, at: str | None = None) -> None:
    """The page at desktop and phone widths, from the top or from the element `at`."""
    for suffix, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.evaluate("window.scrollTo(0, 0)")
        if at:
            page.locator(at).evaluate("el => el.scrollIntoView()")
        page.screenshot(path=HERE / f"{name}-{suffix}.png", animations="disabled")
    page.set_viewport_size(DESKTOP)


def _launch(page, workflow: str, fill, *, model: str | None = None) -> None:
    page.goto("/")
    page.get_by_label("Workflow").select_option(label=workflow)
    fill(page)
    if model:
        page.get_by_label("Model").select_option(label=model)
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url("**/runs/*/")


def _eligibility(page) -> None:
    page.get_by_label("patient_name").fill("Ada Lovelace")
    page.get_by_label("date_of_birth").fill("1990-01-02")
    page.get_by_label("payer").select_option("Cigna")


def _invoice(page) -> None:
    page.get_by_label("invoice_filename").fill("invoice-0042.pdf")
    page.get_by_label("invoice_total").fill("1250.50")
    page.get_by_label("line_item_count").fill("12")


def _status(page):
    return page.get_by_role("region", name="Status").get_by_role("status")


@pytest.mark.django_db(transaction=True)
def test_take_screenshots(browser, live_server, demo_data):  # noqa: F811
    context = browser.new_context(
        base_url=live_server.url,
        viewport=DESKTOP,
        locale="en-US",
        timezone_id="Europe/Berlin",
        color_scheme="light",
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "response",
        lambda response: (
            problems.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )
    log_in(page, "demo", "demo")

    # Launch form, filled in, with the production prompt's preview.
    page.goto("/")
    page.get_by_label("Workflow").select_option(label=ELIGIBILITY)
    _eligibility(page)
    page.get_by_label("Model").select_option(label="Claude Sonnet 4.5")
    expect(page.get_by_role("heading", name="Prompt preview — production (v1)")).to_be_visible()
    _shoot(page, "launch")

    # A finished run, then one caught while running (the invoice workflow runs for ~10 s).
    _launch(page, ELIGIBILITY, _eligibility, model="Claude Opus 4.1")
    expect(_status(page)).to_contain_text("Success", timeout=20_000)
    _shoot(page, "run-finished")

    # Retry it: both attempts are kept; the agent's steps as a timeline; the attempts compared.
    page.on("dialog", lambda dialog: dialog.accept())  # a browser confirmation, if any
    page.get_by_role("button", name="Retry").click()
    # Retry asks first, in the page's own dialog.
    page.get_by_role("dialog").get_by_role("button", name="Yes, start attempt 2").click()
    expect(page.get_by_role("region", name="Attempts").get_by_role("listitem")).to_have_count(2)
    expect(_status(page)).to_contain_text(re.compile("Success|Task failed|Error"), timeout=20_000)
    page.locator("#timeline-heading").evaluate("el => el.scrollIntoView()")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.timeline img')].slice(0, 4)"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    _shoot(page, "run-timeline", at="#timeline-heading")
    page.get_by_role("link", name="Compare", exact=True).click()
    expect(page.get_by_role("region", name="Side by side")).to_be_visible()
    _shoot(page, "compare", at="#compare-summary-heading")
    _launch(page, INVOICE, _invoice)
    expect(_status(page)).to_contain_text("Running", timeout=20_000)
    _shoot(page, "run-running")
    # Cancel asks first: what will happen, in a dialog; "Keep it running" leaves it be.
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.get_by_role("dialog")).to_contain_text("Cancel run")
    _shoot(page, "confirm-cancel")
    page.get_by_role("dialog").get_by_role("link", name="Keep it running").click()
    expect(page.get_by_role("dialog")).to_be_hidden()

    # A matrix batch: 2 models × 2 prompt versions × 3 rows, finished, with its grid.
    page.goto("/batches/new")
    matrix_batch_preview(
        page, versions=("v1 — first version", "v2 — sign in first; report the deductible")
    )
    expect(page.get_by_role("table", name="Runs it will create")).to_be_visible()
    _shoot(page, "batch-new", at="#preview-heading")
    page.get_by_role("button", name="Launch 12 runs").click()
    expect(page.get_by_role("region", name="Progress").get_by_role("status")).to_contain_text(
        "(100%)", timeout=30_000
    )
    _shoot(page, "batch")

    # The same batch read to decide: against a picked baseline, then by input row.
    decide = page.get_by_role("region", name="Comparison")
    expect(decide).not_to_have_attribute("hx-trigger", re.compile("."))
    page.get_by_label("Baseline").select_option(label="Claude Opus 4.1 · v2")
    page.get_by_role("button", name="Compare with this baseline").click()
    expect(decide.locator("tr.is-baseline")).to_contain_text("Claude Opus 4.1 · v2")
    _shoot(page, "batch-grid", at="#batch-decide")
    page.get_by_role("link", name="By input row").click()
    expect(page.get_by_role("table", name="Runs by input row")).to_be_visible()
    _shoot(page, "batch-rows", at="#batch-decide")

    # A batch whose runs fail a post-run check: its failure clusters, and Retry's confirmation.
    page.goto("/batches/new")
    page.get_by_label("Workflow").select_option(label=TIMESHEET)
    page.get_by_role("button", name="Choose workflow").click()
    page.get_by_label("Batch name").fill("Timesheets, week 48")
    models = page.get_by_role("group", name="Models")
    models.get_by_role("checkbox", name="Claude Opus 4.1", exact=True).check()
    page.get_by_label("Rows", exact=True).fill(
        "hours,project,week_ending\n40,Apollo,2026-11-27\n32,Borealis,2026-11-27\n"
        "38,Cassini,2026-11-27\n"
    )
    page.get_by_role("button", name="Preview").click()
    page.get_by_role("button", name="Launch 6 runs").click()
    expect(page.get_by_role("region", name="Progress").get_by_role("status")).to_contain_text(
        "(100%)", timeout=30_000
    )
    clusters = page.get_by_role("table", name="Failure clusters")
    expect(clusters).to_contain_text("Confirmation number captured", timeout=10_000)
    _shoot(page, "batch-clusters", at="#clusters-heading")
    clusters.get_by_role("link", name="Retry this cluster").first.click()
    expect(page.get_by_role("heading", name="Retry this cluster?")).to_be_visible()
    _shoot(page, "batch-cluster-retry")

    # The runs list, the invoice run perhaps still running.
    page.goto("/runs/")
    _shoot(page, "runs")

    page.goto(f"/prompts/{uuid.UUID(str(_workflow_id(ELIGIBILITY)))}/?a=1&b=2")
    expect(page.get_by_role("heading", name=f"Prompts of {ELIGIBILITY}")).to_be_visible()
    _shoot(page, "prompts-diff", at="#prompt-diff")

    # The versions with their numbers, then the promote form with the batch's evidence.
    _shoot(page, "prompts", at="#versions-heading")
    page.locator("#v2").get_by_role("button", name="Promote to production").click()
    expect(page.get_by_role("region", name="Evidence")).to_contain_text("Enough evidence")
    _shoot(page, "promote")

    page.goto("/models/")
    _shoot(page, "models")

    context.close()
    assert problems == []


def _workflow_id(name: str):
    from launcher.models import Workflow

    return Workflow.objects.get(name=name).pk
