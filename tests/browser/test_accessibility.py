"""What a newcomer, a keyboard user and a screen reader user meet on the main pages."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

MAIN_PAGES = ["/", "/runs/", "/batches/", "/batches/new", "/prompts/", "/models/"]

# Each visible form control and its accessible name, the way assistive technology (and
# Playwright's get_by_label / get_by_role) computes it from labels, aria-* and text.
_UNNAMED_CONTROLS = """() => [...document.querySelectorAll(
    "input:not([type=hidden]), select, textarea, button, a[href]"
)].filter((el) => el.getClientRects().length > 0 && !el.closest("[aria-hidden=true]"))
  .filter((el) => {
    const named = (el.labels && [...el.labels].some((label) => label.textContent.trim()))
      || (el.getAttribute("aria-label") || "").trim()
      || (el.getAttribute("aria-labelledby") || "").split(/\\s+/).some(
           (id) => id && document.getElementById(id)?.textContent.trim())
      || ((el.tagName === "BUTTON" || el.tagName === "A") && el.textContent.trim())
      || (el.getAttribute("title") || "").trim();
    return !named;
  })
  .map((el) => el.outerHTML.slice(0, 120))"""


def test_every_control_on_the_main_pages_has_a_name(page, sandbox, staff):
    log_in(page, staff.username)
    for path in MAIN_PAGES:
        page.goto(path)
        assert page.evaluate(_UNNAMED_CONTROLS) == [], path


def test_keyboard_focus_is_visible_from_the_first_tab(page, sandbox, operator):
    log_in(page, operator.username)
    page.goto("/runs/")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Tab")
    focused_ring = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return s.boxShadow !== 'none' || s.outlineStyle !== 'none'; }"
    )
    assert focused_ring, "the focused control shows a focus ring"


def test_a_newcomer_is_told_there_are_no_runs_yet_and_how_to_launch_one(page, sandbox, operator):
    log_in(page, operator.username)

    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_text("No runs yet — launch one.")).to_be_visible()
    page.get_by_role("link", name="launch one").click()

    expect(page.get_by_role("heading", name="Launch a run")).to_be_visible()
    expect(page.get_by_role("button", name="Launch run")).to_be_enabled()
