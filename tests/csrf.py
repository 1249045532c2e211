"""A valid CSRF token for a test client with `enforce_csrf_checks=True`.

A POST without one is refused by the CSRF middleware with a 403 before any view runs, so a test
expecting a permission 403 must send a token, or it proves nothing about the permission check.
"""

from django.conf import settings

SECRET = "t" * 32  # an unmasked secret is a valid token for a cookie holding the same secret


def csrf_headers(client) -> dict[str, str]:
    """Give `client` a CSRF cookie; return the headers that carry the matching token."""
    client.cookies[settings.CSRF_COOKIE_NAME] = SECRET
    return {"X-CSRFToken": SECRET}
