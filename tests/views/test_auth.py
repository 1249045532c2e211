"""Every page and fragment needs a login; only /healthz and the webhook are anonymous."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db

# URLs that answer without a session: health probes, signed webhooks, the sandbox API (Bearer).
ANONYMOUS_PREFIXES = ("healthz", "webhooks/", "sandbox/", "accounts/login/", "admin/", "static/")


def _launcher_paths():
    """Every route of the launcher (admin excluded: it has its own login), with sample args."""
    samples = {"int": "1", "uuid": "00000000-0000-0000-0000-000000000001", "str": "x", "slug": "x"}
    paths = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                if route.startswith(ANONYMOUS_PREFIXES):
                    continue
                for converter, sample in samples.items():
                    route = re.sub(rf"<{converter}:\w+>", sample, route)
                paths.append("/" + _regex_sample(route))

    walk(get_resolver().url_patterns)
    return paths


def _regex_sample(route: str) -> str:
    """A `re_path` route with each named group replaced by a value it matches (groups may nest)."""
    out, i = [], 0
    while i < len(route):
        if route.startswith("(?P<", i):
            start, depth = i, 0
            while True:
                depth += {"(": 1, ")": -1}.get(route[i], 0)
                i += 1
                if depth == 0:
                    break
            group = route[start:i]
            out.append(next(c for c in ("1", "1.1", "x") if re.fullmatch(group, c)))
        else:
            out.append(route[i])
            i += 1
    return "".join(out).replace("^", "").replace("$", "")


def test_the_route_list_is_not_empty():
    assert "/" in _launcher_paths()
    assert "/runs/" in _launcher_paths()


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_visitors_are_sent_to_login_for_every_page(client, method):
    for path in _launcher_paths():
        response = getattr(client, method)(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith(reverse("login")), path


def test_htmx_fragments_also_need_login(client):
    for path in _launcher_paths():
        response = client.get(path, headers={"HX-Request": "true"})
        assert response.status_code == 302, path


def test_the_login_page_is_public_and_demo_credentials_log_in(client, django_user_model):
    django_user_model.objects.create_superuser("demo", "demo@example.com", "demo")
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b"Log in to Launcher" in page.content
    response = client.post(reverse("login"), {"username": "demo", "password": "demo"})
    assert response.status_code == 302
    assert response["Location"] == reverse("launch")
    assert client.get(reverse("launch")).status_code == 200


def test_a_wrong_password_is_refused_with_a_message(client, django_user_model):
    django_user_model.objects.create_user("demo", password="demo")
    response = client.post(reverse("login"), {"username": "demo", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_logout_is_a_post_and_ends_the_session(operator_client):
    from django.middleware.csrf import get_token  # noqa: F401

    page = operator_client.get(reverse("launch"))
    token = page.context["csrf_token"]
    response = operator_client.post(reverse("logout"), {"csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert operator_client.get(reverse("launch")).status_code == 302


def test_models_page_is_for_staff_only(operator_client, staff_client):
    assert operator_client.get(reverse("model_list")).status_code == 403
    assert staff_client.get(reverse("model_list")).status_code == 200


def test_navigation_shows_staff_links_only_to_staff(operator_client, staff_client):
    assert b'href="/models/"' not in operator_client.get(reverse("launch")).content
    assert b'href="/models/"' in staff_client.get(reverse("launch")).content


def test_operators_group_has_the_launch_permission(operator):
    assert operator.has_perm("launcher.launch_run")
