import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "launcher.settings")
application = get_wsgi_application()

# gunicorn runs no system checks: refuse to serve a production configuration that lacks a
# required value (launcher/checks.py), as `manage.py check --deploy` would report it.
from launcher.checks import production_settings_errors  # noqa: E402

_errors = production_settings_errors()
if _errors:
    raise ImproperlyConfigured("; ".join(f"{error.msg} {error.hint}" for error in _errors))
