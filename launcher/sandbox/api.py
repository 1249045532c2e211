"""The wrapper every sandbox endpoint shares: method check, Bearer auth, idempotency on writes,
and turning ApiError / ValidationFailed into the real API's error bodies."""

import hmac
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from launcher.sandbox.errors import ApiError, ValidationFailed
from launcher.sandbox.idempotency import idempotent_call

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def bearer_problem(request: HttpRequest) -> str | None:
    """Why the request is not authenticated, or None when its Bearer key is the sandbox's."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "Not authenticated: send Authorization: Bearer <api key>"
    if not hmac.compare_digest(token.strip().encode(), settings.SANDBOX_API_KEY.encode()):
        return "Invalid API key"
    return None


def api_endpoint(*methods: str) -> Callable:
    """Decorate a view `view(request, **path_params) -> HttpResponse` serving `methods`.

    The sandbox API has its own Bearer auth, so it is exempt from login and CSRF (it is called
    by programs, never by a browser session)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def endpoint(request: HttpRequest, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = JsonResponse({"detail": "Method Not Allowed"}, status=405)
                response["Allow"] = ", ".join(methods)
                return response
            problem = bearer_problem(request)
            if problem:
                response = JsonResponse({"detail": problem}, status=401)
                response["WWW-Authenticate"] = "Bearer"
                return response

            def handle() -> HttpResponse:
                try:
                    return view(request, **kwargs)
                except (ApiError, ValidationFailed) as exc:
                    return exc.response()

            try:
                if request.method in WRITE_METHODS:
                    return idempotent_call(request, handle)
                return handle()
            except (ApiError, ValidationFailed) as exc:
                return exc.response()

        return csrf_exempt(login_not_required(endpoint))

    return decorate
