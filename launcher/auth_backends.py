"""The login lockout (django-axes), made safe for any input.

- A login without a request is not an attempt from the web. Every web login (the login page,
  the admin) passes its request, so it is checked and counted; `authenticate()` without one —
  the test client's `Client.login()`, a shell — made the stock `AxesStandaloneBackend` raise
  `AxesBackendRequestParameterRequired`; here it is left to the next backend, so tests and
  scripts keep working and the web stays limited.
- What axes records must be storable. It keeps the username (255 characters at most) and the
  request's query and form data of a failed attempt; a 300-character username or a U+0000 in
  any field (PostgreSQL stores it in no text column) made the failed login a 500. So the
  username it records is cut to the user model's 150 characters without U+0000
  (`lockout_username`, AXES_USERNAME_CALLABLE), and the request's data is rid of U+0000 before
  axes reads it.

And the permission checks, one query each request (`PermissionsBackend`).
"""

import functools

from axes.backends import AxesStandaloneBackend
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.http import QueryDict

USERNAME_MAX_LENGTH = 150  # django.contrib.auth's User.username


def _without_nul(data: QueryDict) -> QueryDict:
    if not any("\x00" in key or any("\x00" in v for v in values) for key, values in data.lists()):
        return data
    clean = QueryDict(mutable=True)
    for key, values in data.lists():
        clean.setlist(key.replace("\x00", ""), [value.replace("\x00", "") for value in values])
    clean._mutable = False
    return clean


def lockout_username(request, credentials) -> str | None:
    """The username axes locks and records: the one tried, storable."""
    if credentials and credentials.get("username") is not None:
        username = credentials.get("username")
    else:
        username = request.POST.get("username") if request is not None else None
    if username is None:
        return None
    return str(username).replace("\x00", "")[:USERNAME_MAX_LENGTH]


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        # The form has read what it needs; axes reads the rest when it records a failure.
        request.GET = _without_nul(request.GET)
        request.POST = _without_nul(request.POST)
        return super().authenticate(request, username=username, password=password, **kwargs)


class PermissionsBackend(ModelBackend):
    """Django's ModelBackend, with a user's own and group permissions read in one query.

    ModelBackend reads them with two (`user_permissions`, then the groups'), and every Launcher
    view checks a permission, so every poll paid both. Here they are one UNION (its SQL made
    once per process, see `_permissions_sql`). Nothing is kept
    beyond the request: the set lives on the request's user object (ModelBackend's own
    `_perm_cache`), so a permission granted or removed counts from the user's next request. The
    rules are ModelBackend's: an inactive or anonymous user has none, object permissions are
    not supported, a superuser has all (read as Django reads them).
    """

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if user_obj.is_superuser:
            return super().get_all_permissions(user_obj, obj=obj)
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = _permissions_of(user_obj)
        return user_obj._perm_cache


def _permissions_of(user) -> set[str]:
    """ "app_label.codename" of every permission `user` holds itself or through a group."""
    sql, places = _permissions_sql()
    with connections[Permission.objects.db].cursor() as cursor:
        cursor.execute(sql, [user.pk] * places)
        return {f"{app_label}.{codename}" for app_label, codename in cursor.fetchall()}


_NO_USER = -7919  # a user id no row has: it only marks where the query's parameters go


@functools.cache
def _permissions_sql() -> tuple[str, int]:
    """The UNION's SQL, made by the ORM once per process (tables and quoting as Django writes
    them) rather than on every request: compiling it cost as much as running it. Returns the
    SQL and how many times the user's id is passed."""
    names = ("content_type__app_label", "codename")
    own = Permission.objects.filter(user=_NO_USER).values_list(*names).order_by()
    from_groups = Permission.objects.filter(group__user=_NO_USER).values_list(*names).order_by()
    sql, params = own.union(from_groups).query.sql_with_params()
    if any(param != _NO_USER for param in params):
        raise ImproperlyConfigured(f"Unexpected parameters in the permissions query: {params}")
    return sql, len(params)
