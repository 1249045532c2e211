"""Shared fixtures: the personas of STYLE.md (an operator, a staff member, a prompt editor,
an outsider) and clients logged in as each."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client


@pytest.fixture
def clock():
    """Frozen time at tests.launch_api.NOW that a test moves by hand: clock.shift(...)."""
    import time_machine

    from tests.launch_api import NOW

    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _empty_cache():
    """The cache (workflow lists, the health probe) never carries over from another test."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def catalog(db):
    """Test data of tests/launch_api.py: workflows, models, versions and labels."""
    from tests.launch_api import Catalog

    return Catalog()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's deliberate slowness is for attackers, not for test set-up."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user(django_user_model, username, **extra):
    return django_user_model.objects.create_user(username=username, password="pw", **extra)


@pytest.fixture
def operator(django_user_model):
    user = _user(django_user_model, "olivia-operator")
    user.groups.add(Group.objects.get(name="Operators"))
    return user


@pytest.fixture
def staff(django_user_model):
    user = _user(django_user_model, "sam-staff", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    return user


@pytest.fixture
def prompt_editor(django_user_model):
    """Staff (for the admin) in the "Prompt editors" group; cannot move `production`."""
    user = _user(django_user_model, "pat-prompt-editor", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"), Group.objects.get(name="Prompt editors"))
    return user


@pytest.fixture
def release_manager(django_user_model):
    """A prompt editor who may also move `production` (and run its canaries)."""
    from django.contrib.auth.models import Permission

    user = _user(django_user_model, "rita-release-manager", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"), Group.objects.get(name="Prompt editors"))
    user.user_permissions.add(Permission.objects.get(codename="move_production_label"))
    return user


@pytest.fixture
def outsider(django_user_model):
    """Logged in, but in no group and without any permission."""
    return _user(django_user_model, "otto-outsider")


def _client_for(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def operator_client(operator):
    return _client_for(operator)


@pytest.fixture
def staff_client(staff):
    return _client_for(staff)


@pytest.fixture
def prompt_editor_client(prompt_editor):
    return _client_for(prompt_editor)


@pytest.fixture
def outsider_client(outsider):
    return _client_for(outsider)


@pytest.fixture(autouse=True)
def _close_the_shared_api_client():
    """A kept-alive connection to a live server keeps one of its threads (and that thread's
    database connection) alive past the test; close the process-wide client after each test."""
    yield
    from launcher.cyberdesk import close_client

    close_client()
