"""The login lockout (django-axes), with one change: a login without a request is not an
attempt from the web.

Every web login (the login page, the admin) passes its request, so it is checked and counted.
`authenticate()` without one — the test client's `Client.login()`, a shell — made the stock
`AxesStandaloneBackend` raise `AxesBackendRequestParameterRequired`; here it is left to the
next backend, so tests and scripts keep working and the web stays limited.
"""

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
