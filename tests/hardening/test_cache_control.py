"""Issue 15 item 2: no authenticated page or fragment may be kept by a browser or a proxy."""

import pytest
from django.urls import reverse

from tests.fake_cyberdesk import serve
from tests.launch_api import make_run
from tests.views.test_auth import _launcher_paths

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    return client


def test_every_page_and_fragment_says_no_store(api, admin_client, catalog):
    run = make_run(catalog.workflow, api=api)
    for path in _launcher_paths():
        path = path.replace("/runs/1/", f"/runs/{run.pk}/")
        for headers in ({}, {"HX-Request": "true"}):
            response = admin_client.get(path, headers=headers)
            assert "no-store" in response.get("Cache-Control", ""), (path, headers)


def test_a_post_answer_and_a_redirect_say_no_store(api, operator_client, catalog):
    page = operator_client.get(reverse("run_list"))
    response = operator_client.post(
        reverse("run_bulk_action"),
        {"action": "cancel", "csrfmiddlewaretoken": page.context["csrf_token"]},
    )
    assert response.status_code == 302
    assert "no-store" in response["Cache-Control"]
    assert "no-store" in page["Cache-Control"]


def test_the_login_page_and_the_login_redirect_say_no_store(client):
    assert "no-store" in client.get(reverse("login"))["Cache-Control"]
    assert "no-store" in client.get(reverse("run_list"))["Cache-Control"]


def test_a_policy_a_view_chose_is_kept(client):
    from django.http import HttpResponse

    from launcher.middleware import NoStoreMiddleware

    def view(request):
        response = HttpResponse("x")
        response["Cache-Control"] = "public, max-age=60"
        return response

    assert NoStoreMiddleware(view)(None)["Cache-Control"] == "public, max-age=60"


def test_static_files_stay_cacheable(client):
    response = client.get("/static/launcher/app.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
