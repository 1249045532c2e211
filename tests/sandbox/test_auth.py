"""Bearer auth, methods and unknown paths, answered like the real API (JSON `detail`)."""

import pytest

from tests.sandbox.conftest import SandboxApi

pytestmark = pytest.mark.django_db


def test_it_refuses_a_request_without_a_key(demo):
    response = SandboxApi().client.get("/sandbox/v1/workflows")

    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_refuses_a_wrong_key(demo):
    response = SandboxApi(key="sk_wrong").get("workflows")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


def test_it_accepts_the_key_from_settings(demo, settings):
    settings.SANDBOX_API_KEY = "sk_other"

    assert SandboxApi(key="sk_other").get("workflows").status_code == 200
    assert SandboxApi().get("workflows").status_code == 401


def test_it_needs_no_login_and_no_csrf_token(demo):
    """The API is for programs: Bearer auth replaces the session and CSRF."""
    response = SandboxApi().post("runs", {"workflow_id": "not-a-uuid"})

    assert response.status_code == 422


def test_an_unknown_path_is_a_json_404(api):
    response = api.get("machines")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_a_wrong_method_is_a_json_405(api):
    response = api.post("model-configurations", {})

    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
