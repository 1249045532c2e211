"""The permission checks read a user's own and group permissions in one query
(`launcher.auth_backends.PermissionsBackend`), keep them only for the request, and are exactly
as strict as Django's ModelBackend: a permission removed or granted counts from the user's
next request."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from launcher.auth_backends import PermissionsBackend

pytestmark = pytest.mark.django_db
URL = reverse("run_list")


def launch_run() -> Permission:
    return Permission.objects.get(content_type__app_label="launcher", codename="launch_run")


def permission_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if '"auth_permission"' in q["sql"]]


def test_a_request_reads_the_permissions_with_one_query(operator_client):
    operator_client.get(URL)  # warm the session

    with CaptureQueriesContext(connection) as queries:
        assert operator_client.get(URL).status_code == 200

    assert len(permission_queries(queries)) == 1


def test_leaving_the_group_is_refused_on_the_next_request(operator, operator_client):
    assert operator_client.get(URL).status_code == 200

    operator.groups.remove(Group.objects.get(name="Operators"))

    assert operator_client.get(URL).status_code == 403


def test_a_permission_taken_from_the_group_is_refused_on_the_next_request(operator_client):
    assert operator_client.get(URL).status_code == 200

    Group.objects.get(name="Operators").permissions.remove(launch_run())

    assert operator_client.get(URL).status_code == 403


def test_a_permission_granted_to_the_user_counts_on_the_next_request(outsider, outsider_client):
    assert outsider_client.get(URL).status_code == 403

    outsider.user_permissions.add(launch_run())
    assert outsider_client.get(URL).status_code == 200

    outsider.user_permissions.remove(launch_run())
    assert outsider_client.get(URL).status_code == 403


def test_a_deactivated_user_is_refused(operator, operator_client):
    assert operator_client.get(URL).status_code == 200

    get_user_model().objects.filter(pk=operator.pk).update(is_active=False)

    assert operator_client.get(URL).status_code != 200


@pytest.mark.parametrize("kind", ["operator", "release_manager", "outsider", "superuser"])
def test_the_permissions_are_django_s_own(kind, request, django_user_model):
    """Own, group and both at once (the release manager), none, and a superuser's all: the
    same set as ModelBackend's two queries, for each kind of user."""
    if kind == "superuser":
        user = django_user_model.objects.create_superuser("root", password="pw")
    else:
        user = request.getfixturevalue(kind)

    ours = PermissionsBackend().get_all_permissions(django_user_model.objects.get(pk=user.pk))
    django_s = ModelBackend().get_all_permissions(django_user_model.objects.get(pk=user.pk))

    assert ours == django_s
    assert ("launcher.launch_run" in ours) == (kind != "outsider")


def test_an_inactive_user_and_object_permissions_have_none(operator):
    backend = PermissionsBackend()
    assert backend.get_all_permissions(operator, obj=object()) == set()
    operator.is_active = False
    assert backend.get_all_permissions(operator) == set()
    assert not backend.has_perm(operator, "launcher.launch_run")
