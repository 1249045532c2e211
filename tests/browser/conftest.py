"""Browser journeys: Playwright for Python driving Debian's Chromium against the live server.

Every test here is marked `browser` (skip them locally with `-m "not browser"`). The launcher
talks to the sandbox over real HTTP on the same live server, exactly as `make run` does.
Each page records console errors and failed requests; a journey fails if there are any.
"""

import os
import shutil

import pytest

ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
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


@pytest.fixture(scope="package", autouse=True)
def _orm_between_browser_steps():
    """Playwright's sync API runs an event loop in this thread, so Django refuses ORM calls made
    here ("async unsafe"); the ORM calls a journey makes between browser steps (and the
    database flush after each journey) are plain synchronous code. Allowed for the browser
    tests only — set when this package starts, restored when it ends — so the rest of the
    suite still catches a real sync-in-async mistake."""
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    yield
    if previous is None:
        os.environ.pop(ASYNC_UNSAFE, None)
    else:
        os.environ[ASYNC_UNSAFE] = previous


# Package scope: the browser (and Playwright's event loop in this thread) is closed when the
# browser tests are done, before any other test runs in this thread.
@pytest.fixture(scope="package")
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


READER_TIME_ZONE = "America/New_York"


class PageProblems:
    def __init__(self):
        self.console_errors: list[str] = []
        self.failed_requests: list[str] = []

    def attach(self, page):
        page.on(
            "console",
            lambda msg: (
                self.console_errors.append(f"{msg.text} at {msg.location.get('url')}")
                if msg.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        page.on(
            "requestfailed",
            lambda request: (
                self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")
                # Leaving a page aborts what it was still loading: not a failure of the app.
                if request.failure != "net::ERR_ABORTED"
                else None
            ),
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
    # A zone other than the server's UTC: pages must show times in the reader's zone.
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1280, "height": 900},
        locale="en-US",
        timezone_id=READER_TIME_ZONE,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems = PageProblems()
    problems.attach(page)
    page.problems = problems
    yield page
    context.close()
    seen = {"console errors": problems.console_errors, "failed requests": problems.failed_requests}
    assert seen == {"console errors": [], "failed requests": []}


# --- Personas and demo data ----------------------------------------------------------------------
# Transactional tests flush the database after each test, and with it the groups the data
# migrations created; these personas get their permissions directly instead.

_PROMPT_EDITOR_CODENAMES = [
    "add_promptversion",
    "view_promptversion",
    "add_promptlabel",
    "change_promptlabel",
    "view_promptlabel",
    "view_workflow",
]


def _persona(django_user_model, username: str, codenames=(), **extra):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username=username, password="pw", **extra)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="launcher", codename__in=["launch_run", *codenames]
        )
    )
    return user


@pytest.fixture
def operator(django_user_model):
    return _persona(django_user_model, "olivia-operator")


@pytest.fixture
def staff(django_user_model):
    return _persona(django_user_model, "sam-staff", is_staff=True)


@pytest.fixture
def prompt_editor(django_user_model):
    return _persona(django_user_model, "pat-prompt-editor", _PROMPT_EDITOR_CODENAMES, is_staff=True)


# Sandbox runs move through their phases at this fraction of the demo's timings (about 1 s
# scheduling, 2 s running for a quick workflow): fast journeys, yet every status is visible.
JOURNEY_TIME_SCALE = 0.5


@pytest.fixture
def sandbox(sandbox_api, settings):
    """The sandbox's demo workflows and models, served by the live server, runs sped up."""
    from launcher.sandbox.seed import seed_demo_data

    settings.SANDBOX_TIME_SCALE = JOURNEY_TIME_SCALE
    seed_demo_data()
    return sandbox_api


@pytest.fixture
def sandbox_clock(sandbox, settings):
    """The sandbox's clock, held where it is: a run stays in its phase until the test moves the
    clock on (`sandbox_clock.advance(seconds)`). Launcher itself keeps real time."""
    from launcher.sandbox.clock import held_clock

    settings.SANDBOX_TEST_CLOCK = True
    with held_clock() as clock:
        yield clock


def log_in(page, username: str, password: str = "pw") -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


MATRIX_ROWS = (
    "patient_name,date_of_birth,payer\n"
    "Ada Lovelace,1990-01-02,Cigna\n"
    "Grace Hopper,1985-12-09,Aetna\n"
    "Alan Turing,1992-06-23,Medicare\n"
)


def matrix_batch_preview(page, *, versions: tuple[str, str]) -> None:
    """On the new batch form: the eligibility workflow, Claude Opus 4.1 and Sonnet 4.5 ×
    the two prompt `versions` (their checkbox names) × three rows, then Preview — the matrix
    the browser tests and the screenshots launch."""
    page.get_by_label("Workflow").select_option(label="Check insurance eligibility")
    page.get_by_role("button", name="Choose workflow").click()
    page.get_by_label("Batch name").fill("Opus vs Sonnet, v1 vs v2")
    models = page.get_by_role("group", name="Models")
    models.get_by_role("checkbox", name="Default model").uncheck()
    models.get_by_role("checkbox", name="Claude Opus 4.1", exact=True).check()
    models.get_by_role("checkbox", name="Claude Sonnet 4.5", exact=True).check()
    prompts = page.get_by_role("group", name="Prompts")
    prompts.get_by_role("checkbox", name="Stored prompt").uncheck()
    for version in versions:
        prompts.get_by_role("checkbox", name=version).check()
    page.get_by_label("Rows", exact=True).fill(MATRIX_ROWS)
    page.get_by_role("button", name="Preview").click()
