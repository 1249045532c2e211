"""View decorators that check permissions and answer 403 (never a redirect loop) when missing.

Permissions are always checked in the view: htmx can ask for any fragment directly.

The checks themselves are plain functions called on every request (`staff_check`,
`permission_check`), not code inside the decorators' closures: mutation testing (`make mutate`)
can then tell which tests reach them, and so prove that removing a check fails a test.
"""

from functools import wraps

from django.core.exceptions import PermissionDenied

LAUNCH_RUN = "launcher.launch_run"
OPERATORS_GROUP = "Operators"


def staff_check(user) -> None:
    """Raise PermissionDenied (→ 403) unless `user` is staff."""
    if not user.is_staff:
        raise PermissionDenied("Only staff can do this.")


def permission_check(user, perm: str) -> None:
    """Raise PermissionDenied (→ 403) unless `user` has `perm`."""
    if not user.has_perm(perm):
        raise PermissionDenied(f"You need the {perm!r} permission.")


def staff_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        staff_check(request.user)
        return view(request, *args, **kwargs)

    return wrapper


def permission_required(perm: str):
    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            permission_check(request.user, perm)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
