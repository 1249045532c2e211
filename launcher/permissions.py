"""View decorators that check permissions and answer 403 (never a redirect loop) when missing.

Permissions are always checked in the view: htmx can ask for any fragment directly.
"""

from functools import wraps

from django.core.exceptions import PermissionDenied

LAUNCH_RUN = "launcher.launch_run"
OPERATORS_GROUP = "Operators"


def staff_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can do this.")
        return view(request, *args, **kwargs)

    return wrapper


def permission_required(perm: str):
    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.has_perm(perm):
                raise PermissionDenied(f"You need the {perm!r} permission.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
