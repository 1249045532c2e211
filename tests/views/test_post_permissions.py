"""Who may POST where: one table of (endpoint, persona) → status, posted WITH a valid CSRF token.

A POST without a token gets the CSRF middleware's 403 whatever the view decides, so a test that
expects 403 from an unauthorised persona must send a valid token, or it proves nothing about the
permission check. Here every request carries one (cookie + `X-CSRFToken`, as htmx sends it), every
403 is checked not to be the CSRF page, and every row has a persona that gets through — so the
token is known to work.

Every POST route of the URLconf must have a row: `test_every_post_route_has_a_row` posts to each
launcher route as a superuser and fails on any route that does not answer 405 and is not in
`POSTS`. How to add a row: docs/testing.md, "The POST permission table".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from launcher.models import Batch, ModelOption, RunStatus
from tests.fake_cyberdesk import serve
from tests.launch_api import VALID_POST, make_run

pytestmark = pytest.mark.django_db

PERSONAS = ("anonymous", "outsider", "operator", "staff", "prompt_editor", "release_manager")
CSRF_SECRET = "a" * 32  # an unmasked secret is a valid token for a cookie holding the same
# Refusals. "login": LoginRequiredMiddleware's redirect to the login page; "admin login":
# admin_view's redirect to the admin's. Any int is the status of a request that got through.
LOGIN = "login"
ADMIN_LOGIN = "admin login"
FORBIDDEN = 403
REFUSED = (LOGIN, ADMIN_LOGIN, FORBIDDEN)


@dataclass(frozen=True)
class Row:
    """One POST endpoint: how to build its URL and body, and what each persona gets."""

    expect: dict[str, int | str]
    data: dict = field(default_factory=dict)


def _everyone(status: int) -> dict[str, int | str]:
    return dict.fromkeys(PERSONAS, status)


def _launchers(ok: int) -> dict[str, int | str]:
    """`launcher.launch_run`: the operators (staff and editors are in the group too)."""
    return {"anonymous": LOGIN, "outsider": FORBIDDEN, **dict.fromkeys(PERSONAS[2:], ok)}


def _staff(ok: int) -> dict[str, int | str]:
    return {
        "anonymous": LOGIN,
        "outsider": FORBIDDEN,
        "operator": FORBIDDEN,
        **dict.fromkeys(("staff", "prompt_editor", "release_manager"), ok),
    }


def _editors(ok: int) -> dict[str, int | str]:
    """Prompt editors (labels other than production, versions): the group's permissions."""
    return {**_launchers(FORBIDDEN), "anonymous": LOGIN, "prompt_editor": ok, "release_manager": ok}


def _release_managers(ok: int) -> dict[str, int | str]:
    """`launcher.move_production_label`: production and its canaries."""
    return {**_launchers(FORBIDDEN), "anonymous": LOGIN, "release_manager": ok}


# Keyed by URL name (or, for an unnamed route, its pattern). `{...}` values in data are filled
# from the objects of the `world` fixture.
POSTS: dict[str, Row] = {
    "launch": Row(
        _launchers(302),
        data={"workflow": "{workflow}", "model": "", "prompt": "stored", **VALID_POST},
    ),
    "run_bulk_action": Row(_launchers(302), data={"action": "cancel", "run": "{run}"}),
    "run_cancel": Row(_launchers(302)),
    # The confirmation of "Cancel selected" (issue 14): a page, nothing done.
    "run_bulk_confirm": Row(_launchers(200), data={"action": "cancel", "run": "{run}"}),
    "run_retry": Row(_launchers(302), data={}),
    "batch_new": Row(
        _launchers(200),
        data={"workflow": "{workflow}", "models": ["default"], "prompts": ["stored"]},
    ),
    "batch_cancel": Row(_launchers(302)),
    "batch_retry_failed": Row(_launchers(302)),
    # No failed run in the (empty) world batch: a redirect back with a notice, nothing retried.
    "batch_cluster_retry": Row(_launchers(302), data={"cluster": "error:timeout"}),
    "model_sync": Row(_staff(302)),
    "model_toggle": Row(_staff(302), data={"enabled": "0"}),
    "model_prices": Row(
        _staff(302),
        data={"price_input_per_million": "3", "price_output_per_million": "15"},
    ),
    # The launcher's own admin views (Django's add/change/delete views check Django's model
    # permissions; they are Django's, not in this table). Logged-in non-staff go to the admin's
    # login page.
    "admin:launcher_workflow_sync": Row(
        {
            "anonymous": LOGIN,
            "outsider": ADMIN_LOGIN,
            "operator": ADMIN_LOGIN,
            "staff": FORBIDDEN,  # staff without view_workflow
            "prompt_editor": 302,
            "release_manager": 302,
        }
    ),
    "admin:launcher_promptversion_edit": Row(
        {
            "anonymous": LOGIN,
            "outsider": ADMIN_LOGIN,
            "operator": ADMIN_LOGIN,
            "staff": FORBIDDEN,  # no add_promptversion
            "prompt_editor": 200,  # the diff to confirm
            "release_manager": 200,
        },
        data={"text": "v3: look up {customer_id}.", "note": "shorter"},
    ),
    "admin:launcher_promptversion_publish": Row(
        {
            "anonymous": LOGIN,
            "outsider": ADMIN_LOGIN,
            "operator": ADMIN_LOGIN,
            "staff": FORBIDDEN,  # publishing needs launcher.change_workflow
            "prompt_editor": 302,  # the Prompt editors group has it
            "release_manager": 302,
        }
    ),
    "admin:launcher_promptversion_confirm_variables": Row(
        {
            "anonymous": LOGIN,
            "outsider": ADMIN_LOGIN,
            "operator": ADMIN_LOGIN,
            "staff": FORBIDDEN,  # no add_promptversion
            "prompt_editor": 302,
            "release_manager": 302,
        }
    ),
    # Prompts page: a label other than production moves on the editors' permission (200: the
    # form with its evidence comes back when nothing is posted to confirm); production, and a
    # canary on it, need move_production_label.
    "prompt_label_move": Row(
        _editors(302), data={"label": "staging", "version": "{version}", "reason": "try it"}
    ),
    "prompt_import": Row(_editors(302)),
    "canary_start": Row(
        _release_managers(200), data={"label": "production", "candidate": "{version}"}
    ),
    "canary_stop": Row(_release_managers(404)),
    # Signed by Svix, not by a session: no signature headers → 400 for everyone, logged in or not.
    "cyberdesk_webhook": Row(_everyone(400)),
    "webhooks/cyberdesk": Row(_everyone(400)),
    "logout": Row({**_everyone(302), "anonymous": LOGIN}),
    # A wrong password: the form again (logged-in users may log in as someone else).
    "login": Row(_everyone(200), data={"username": "nobody", "password": "wrong"}),
}

# Sample values for the URL converters, by keyword (a new keyword needs a line here).
URL_KWARGS = {
    "run_id": "run",
    "batch_id": "batch",
    "model_id": "model",
    "workflow_id": "workflow",
    "version_id": "version",
    "attachment_id": "attachment",
    "number": "attempt",
    "canary_id": "canary",
    "path": "image",
    "fmt": "fmt",
}
# Django's own admin views (model permissions are Django's) and the sandbox (Bearer auth,
# tests/sandbox/test_auth.py) are not Launcher's permission checks.
_ADMIN_STANDARD = ("_changelist", "_add", "_change", "_delete", "_history", "autocomplete")


# --- The world every row acts on ----------------------------------------------------------------


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


@pytest.fixture
def world(catalog, api):
    api.add_workflow(id=str(catalog.workflow.pk), main_prompt=catalog.workflow.main_prompt)
    run = make_run(catalog.workflow, status=RunStatus.SUCCESS, api=api)
    batch = Batch.objects.create(workflow=catalog.workflow)
    return {
        "workflow": str(catalog.workflow.pk),
        "run": str(run.pk),
        "batch": str(batch.pk),
        "model": str(catalog.model.pk),
        "version": str(catalog.v1.pk),
        "attachment": str(uuid.uuid4()),
        "attempt": "1",
        "canary": "999999",  # none: a 404 once the permission check has let the user through
        "image": "1.1",
        "fmt": "csv",
    }


@pytest.fixture
def users(operator, staff, prompt_editor, release_manager, outsider):
    return {
        "anonymous": None,
        "outsider": outsider,
        "operator": operator,
        "staff": staff,
        "prompt_editor": prompt_editor,
        "release_manager": release_manager,
    }


def _client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = CSRF_SECRET
    return client


def _fill(value, world):
    if isinstance(value, list):
        return [_fill(item, world) for item in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return world[value[1:-1]]
    return value


# --- Enumerating the URLconf --------------------------------------------------------------------


def _routes(patterns=None, prefix="", namespace=""):
    """(key, route pattern, kwarg names) of every Launcher route, admin's own views excepted."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if route.startswith("sandbox/"):
                continue
            inner = pattern.namespace or namespace
            yield from _routes(pattern.url_patterns, route, inner)
        elif isinstance(pattern, URLPattern):
            if namespace == "admin" and not (
                (pattern.name or "").startswith("launcher_")
                and not pattern.name.endswith(_ADMIN_STANDARD)
            ):
                continue
            key = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            # A path() route names its converters; a re_path() route, its named groups.
            names = list(pattern.pattern.converters) or list(pattern.pattern.regex.groupindex)
            yield key or route.rstrip("/"), route, names


def _url(key: str, route: str, kwargs: list[str], world) -> str:
    missing = [name for name in kwargs if name not in URL_KWARGS]
    assert not missing, f"{route}: add a sample value for {missing} to URL_KWARGS"
    if ":" not in key and "/" in key:  # unnamed
        return "/" + route
    return reverse(key, kwargs={name: world[URL_KWARGS[name]] for name in kwargs})


ROUTES = {key: (route, kwargs) for key, route, kwargs in _routes()}


# --- The tests ----------------------------------------------------------------------------------


def test_every_post_route_has_a_row(world, django_user_model):
    """A route that accepts POST and is not in POSTS fails here: add its row."""
    root = django_user_model.objects.create_superuser(username="root", password="pw")
    client = _client(root)
    accepting = set()
    for key, (route, kwargs) in ROUTES.items():
        client.force_login(root)  # again: the logout route logs the client out
        response = client.post(_url(key, route, kwargs, world), HTTP_X_CSRFTOKEN=CSRF_SECRET)
        if response.status_code != 405:
            accepting.add(key)
    assert accepting - set(POSTS) == set(), "POST routes without a row in POSTS"
    assert set(POSTS) - accepting == set(), "rows in POSTS for routes that refuse POST"


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("key", sorted(POSTS))
def test_post_as_each_persona(key, persona, world, users, api):
    row = POSTS[key]
    route, kwargs = ROUTES[key]
    data = {name: _fill(value, world) for name, value in row.data.items()}
    data.setdefault("token", str(uuid.uuid4()))  # the launch and batch forms' one-time token
    state_before = _state()

    response = _client(users[persona]).post(
        _url(key, route, kwargs, world), data, HTTP_X_CSRFTOKEN=CSRF_SECRET
    )

    expected = row.expect[persona]
    got = _outcome(response)
    assert got == expected, (key, persona, response.status_code, response.content[:300])
    if expected in REFUSED:
        # Refused by the permission check itself (not by CSRF), before anything happened.
        assert b"CSRF verification failed" not in response.content
        assert api.requests == []
        assert _state() == state_before


def _outcome(response) -> int | str:
    location = response.get("Location", "")
    if response.status_code == 302 and location.startswith(reverse("admin:login")):
        return ADMIN_LOGIN
    if response.status_code == 302 and location.startswith(reverse("login") + "?next="):
        return LOGIN
    return response.status_code


def _state() -> tuple:
    """What a refused POST must leave alone."""
    from launcher.models import PromptVersion, Run

    models = ModelOption.objects.order_by("pk")
    batches = Batch.objects.order_by("pk")
    return (
        list(models.values_list("pk", "enabled", "price_input_per_million")),
        list(Run.objects.order_by("pk").values_list("pk", "status", "attempt")),
        list(batches.values_list("pk", "state", "cancel_requested_at", "retry_requested_at")),
        PromptVersion.objects.count(),
    )


@pytest.mark.parametrize("key", sorted(POSTS))
def test_every_row_lets_someone_through(key):
    """A row where everyone is refused would not show that its token works."""
    assert set(POSTS[key].expect) == set(PERSONAS)
    assert any(status not in REFUSED for status in POSTS[key].expect.values())
