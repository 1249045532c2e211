import httpx
import pytest
from django.db import connection

from launcher.cyberdesk import use_transport

pytestmark = pytest.mark.django_db


def _api_answering(status):
    return use_transport(
        httpx.MockTransport(lambda request: httpx.Response(status, json={"items": [], "total": 0}))
    )


def test_healthz_answers_ok_without_login(client):
    with _api_answering(200):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "api": "ok"}


def test_healthz_names_the_api_error_when_the_key_is_refused(client):
    with _api_answering(401):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["api"] == "error: AuthError (HTTP 401)"


def test_healthz_names_the_database_when_it_is_down(client, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise connection.Database.OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    with _api_answering(200):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"].startswith("error")


def test_healthz_is_not_redirected_by_trailing_slash_rules(client):
    with _api_answering(200):
        assert client.get("/healthz").status_code == 200
