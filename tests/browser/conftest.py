"""Browser journeys: Playwright for Python driving Debian's Chromium against the live server.

Every test here is marked `browser` (skip them locally with `-m "not browser"`). The launcher
talks to the sandbox over real HTTP on the same live server, exactly as `make run` does.
Each page records console errors and failed requests; a journey fails if there are any.
"""

import os
import shutil

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def sandbox_api(live_server, settings):
    """Point the launcher's client (and the sandbox's webhooks) at the live server."""
    settings.CYBERDESK_BASE_URL = live_server.url + "/sandbox"
    settings.CYBERDESK_API_KEY = settings.SANDBOX_API_KEY
    settings.SANDBOX_WEBHOOK_URL = live_server.url + "/webhooks/cyberdesk/"
    return live_server  # tests/conftest.py closes the shared client after each test


class PageProblems:
    def __init__(self):
        self.console_errors: list[str] = []
        self.failed_requests: list[str] = []

    def attach(self, page):
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        page.on(
            "requestfailed",
            lambda request: self.failed_requests.append(f"{request.method} {request.url}"),
        )
        page.on(
            "response",
            lambda response: (
                self.failed_requests.append(
                    f"{response.status} {response.request.method} {response.url}"
                )
                if response.status >= 400 and response.status not in self.expected_statuses
                else None
            ),
        )

    expected_statuses: set[int] = set()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = PageProblems()
    problems.attach(page)
    page.problems = problems
    yield page
    context.close()
    assert problems.console_errors == [], f"console errors: {problems.console_errors}"
    assert problems.failed_requests == [], f"failed requests: {problems.failed_requests}"


def log_in(page, username: str, password: str = "pw") -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
