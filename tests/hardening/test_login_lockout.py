"""Issue 15 item 7: wrong passwords are limited (django-axes), per username and address."""

import pytest
from axes.models import AccessAttempt
from axes.utils import reset
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(django_user_model):
    return django_user_model.objects.create_user("demo", password="right-password")


def _log_in(client, password, username="demo"):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_thirty_wrong_passwords_then_the_right_one_is_locked_out(client, demo, settings):
    for _ in range(30):
        _log_in(client, "wrong")
    response = _log_in(client, "right-password")
    assert response.status_code == 429
    assert b"Too many failed log-in attempts" in response.content
    assert b"ask an administrator to unlock it" in response.content
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("launch")).status_code == 302


def test_the_lock_comes_after_the_failure_limit_not_before(client, demo, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _log_in(client, "wrong").status_code == 200
    assert _log_in(client, "right-password").status_code == 302  # still allowed: resets
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _log_in(client, "wrong")
    assert _log_in(client, "right-password").status_code == 429


def test_the_lock_is_per_username_and_address(client, demo, django_user_model, settings):
    django_user_model.objects.create_user("other", password="other-password")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _log_in(client, "wrong")
    # Another address for the same user, and another user from the same address, still work.
    elsewhere = Client(REMOTE_ADDR="10.9.8.7")
    assert _log_in(elsewhere, "right-password").status_code == 302
    assert _log_in(Client(), "other-password", username="other").status_code == 302


def test_the_lock_ends_after_the_cool_off(client, demo, settings, clock):
    from datetime import timedelta

    for _ in range(settings.AXES_FAILURE_LIMIT):
        _log_in(client, "wrong")
    assert _log_in(client, "right-password").status_code == 429
    clock.shift(settings.AXES_COOLOFF_TIME + timedelta(seconds=1))
    assert _log_in(client, "right-password").status_code == 302


def test_an_admin_unlocks_by_deleting_the_attempt(client, demo, django_user_model, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _log_in(client, "wrong")
    attempt = AccessAttempt.objects.get(username="demo")
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    listing = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200
    assert b"demo" in listing.content
    admin.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"},
    )
    assert not AccessAttempt.objects.exists()
    assert _log_in(client, "right-password").status_code == 302


def test_tests_reset_the_lock_with_axes_reset(client, demo, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _log_in(client, "wrong")
    reset()
    assert _log_in(client, "right-password").status_code == 302


def test_the_test_clients_login_keeps_working(client, demo):
    """Client.login() authenticates without a request: not a web attempt, not limited."""
    assert client.login(username="demo", password="right-password")
    assert not client.login(username="demo", password="wrong")


@pytest.mark.parametrize(
    "data",
    [
        {"username": "x" * 300, "password": "wrong"},
        {"username": "demo", "password": "wrong", "next": "/\x00"},
        {"username": "demo\x00", "password": "wrong"},
        {"username": "demo", "password": "wrong\x00"},
    ],
)
def test_a_failed_login_with_odd_values_is_recorded_not_a_500(client, demo, data):
    """PostgreSQL: a username over 255 characters or a U+0000 anywhere in the form was a 500
    when axes recorded the failure."""
    response = client.post(reverse("login"), data)
    assert response.status_code == 200
    for attempt in AccessAttempt.objects.all():
        assert "\x00" not in (attempt.username or "") + attempt.post_data + attempt.get_data
        assert len(attempt.username or "") <= 150
