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
"""

from axes.backends import AxesStandaloneBackend
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
