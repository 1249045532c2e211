"""URLs only the bench server resolves (see `launcher.bench.wsgi.BenchHandler`)."""

from django.http import HttpResponse
from django.urls import path

from launcher.urls import urlpatterns as launcher_urlpatterns


def logged_in_ok(request) -> HttpResponse:
    """The whole middleware stack, the session and the user — and no work of Launcher's own.
    Between the bare view and a real page, it shows what the stack alone costs."""
    return HttpResponse(b"ok" if request.user.is_authenticated else b"anonymous")


# Launcher's own URLs too, so that everything the stack reverses (the login page) resolves.
urlpatterns = [path("__bench/stack", logged_in_ok), *launcher_urlpatterns]
