"""Response headers every page needs that no view should have to remember."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every response Django renders, unless the view chose a
    policy itself.

    Launcher's pages and fragments carry run outputs, inputs, prompt text and forms with CSRF
    tokens: none of it may be kept by a browser's back/forward cache on a shared machine or by
    a proxy in between. Static files never reach this middleware (WhiteNoise answers them
    earlier, with their own long-lived caching), so they stay cacheable. Anonymous answers
    (the login page, /healthz, the webhook, the sandbox API) get it too: none of them is worth
    caching, and a login page with a stale CSRF token only fails later.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            patch_cache_control(response, no_store=True)
        return response
