"""Launcher settings: the one settings module, driven by environment variables.

Every variable is listed, with what it does, in `.env.example`. A `.env` file in the project
root is read when present (`make run` creates one from `.env.example`); real environment
variables win over it. Values that would make a production deployment unsafe stop start-up
with a clear message instead of running half-configured.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _duration(text: str) -> timedelta:
    """ "3600", "3600s", "90m", "1h" or "2d" → a timedelta (a bad value stops start-up)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    factor = units.get(raw[-1:])
    number = raw[:-1] if factor else raw
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise ImproperlyConfigured(f"Not a duration: {text!r} (e.g. 3600, 90m, 1h).") from None
    if not seconds >= 0:
        raise ImproperlyConfigured(f"A duration cannot be negative: {text!r}.")
    return timedelta(seconds=seconds)


# --- Secrets and hosts -------------------------------------------------------------------------

_DEV_SECRET_KEY = "django-insecure-launcher-development-key-never-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")


def _refuse_weak_secret_key(key: str) -> None:
    """Mirror Django's own strength rule (security.W009) but fail hard with DEBUG off."""
    if not key:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off, set SECRET_KEY to a long random value "
            "(50+ characters), e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
        )
    if key.startswith("django-insecure") or len(key) < 50 or len(set(key)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY is too weak for DEBUG off: use at least 50 characters with at least "
            "5 distinct ones, and not the development default."
        )


ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)

if not DEBUG:
    _refuse_weak_secret_key(SECRET_KEY)
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is empty. With DEBUG off, list the host names this site answers to, "
            "comma-separated, e.g. ALLOWED_HOSTS=launcher.example.com."
        )

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Applications ------------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "launcher.apps.LauncherConfig",
    "launcher.sandbox.apps.SandboxConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Outside the rest, so it sees every answer they give (login redirects, CSRF refusals…).
    "launcher.middleware.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "launcher.urls"
WSGI_APPLICATION = "launcher.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- Database and cache ------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Persistent connections with health checks: no connect cost per request.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the worker read while the other writes; IMMEDIATE avoids
    # "database is locked" on lock upgrades.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache_url("CACHE_URL")}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Sessions are read from the cache (a poll skips its session query) and written through to the
# database, but only when the cache is shared by every process. A per-process locmem cache would
# keep a copy that another process cannot clear: after a logout there, this process would still
# accept the session until it expires (weeks). A database or dummy cache saves nothing.
_PROCESS_LOCAL_OR_USELESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
    "django.core.cache.backends.db.DatabaseCache",
}
if CACHES["default"]["BACKEND"] not in _PROCESS_LOCAL_OR_USELESS_CACHES:
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- Background tasks (django-tasks, database backend) -----------------------------------------

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# --- Authentication ----------------------------------------------------------------------------

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "launch"
LOGOUT_REDIRECT_URL = "login"

# django-axes: after LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that
# pair is locked out for LOGIN_LOCKOUT_MINUTES (0: until an admin unlocks it — Admin → Axes →
# Access attempts → delete the row; or `manage.py axes_reset_username <name>`). Locking the pair,
# not the username alone, keeps a stranger from locking a colleague out from everywhere.
AUTHENTICATION_BACKENDS = [
    # Checks the lockout first; a login without a request (the test client's login(), the
    # shell) is not an attempt from the web and is left to the next backend.
    "launcher.auth_backends.LockoutBackend",
    # ModelBackend with a user's own and group permissions in one query, not two.
    "launcher.auth_backends.PermissionsBackend",
]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=_LOCKOUT_MINUTES) if _LOCKOUT_MINUTES > 0 else None
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "launcher.auth_backends.lockout_username"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Behind a proxy, the client's address comes from X-Forwarded-For (the proxy's own last).
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=1)
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation ----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ------------------------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development (and tests) serve straight from the finders: no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security headers --------------------------------------------------------------------------

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /healthz is probed over plain HTTP by load balancers; the webhook is signed, not cookie-bound,
# and Svix counts a redirect as a failed delivery.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^webhooks/cyberdesk/?$"]

# Content Security Policy: everything from our own origin, no inline script or style.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    },
}

# --- Logging -----------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "server": {"format": "[{server_time}] {message}", "style": "{"},
    },
    # One line per request at most (launcher/console.py): no static 304s, no second line for a
    # sandbox call, nothing from the worker's idle bookkeeping.
    "filters": {"quiet_console": {"()": "launcher.console.QuietConsole"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["quiet_console"],
        },
        "server": {
            "class": "logging.StreamHandler",
            "formatter": "server",
            "filters": ["quiet_console"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # runserver's request lines (Django's own handler for them, replaced to be filtered).
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        # httpx logs every request URL at INFO, query string included (search text); the
        # Cyberdesk client writes its own line per call instead (launcher/cyberdesk/client.py).
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # django-axes says hello at INFO on every start; lockouts are warnings.
        "axes": {"level": "WARNING"},
    },
}

# --- Cyberdesk API and the local sandbox -------------------------------------------------------

PORT = env.int("PORT", default=8000)
SANDBOX_API_KEY = env.str("SANDBOX_API_KEY", default="sk_sandbox")
SANDBOX_ENABLED = env.bool("SANDBOX_ENABLED", default=DEBUG)

CYBERDESK_API_KEY = env.str("CYBERDESK_API_KEY", default="")
# Whether a real key was given: with DEBUG off, none (and no sandbox served) is a start-up
# error (launcher/checks.py).
CYBERDESK_API_KEY_FROM_ENV = bool(CYBERDESK_API_KEY)
if CYBERDESK_API_KEY:
    CYBERDESK_BASE_URL = env.str("CYBERDESK_BASE_URL", default="https://api.cyberdesk.io")
else:
    # No key: talk to our own sandbox, over real HTTP, on this very server.
    CYBERDESK_BASE_URL = env.str("CYBERDESK_BASE_URL", default=f"http://127.0.0.1:{PORT}/sandbox")
    CYBERDESK_API_KEY = SANDBOX_API_KEY
CYBERDESK_USING_SANDBOX = CYBERDESK_BASE_URL.rstrip("/").endswith("/sandbox")

CYBERDESK_WEBHOOK_SECRET = env.str("CYBERDESK_WEBHOOK_SECRET", default="")
# Whether run_complete webhooks are expected here (a Cyberdesk webhook endpoint points at this
# site). With DEBUG off they need CYBERDESK_WEBHOOK_SECRET, or start-up stops; false leaves
# every result to the reconciler's polling.
CYBERDESK_WEBHOOKS_EXPECTED = env.bool("CYBERDESK_WEBHOOKS", default=True)
# Where the sandbox delivers run_complete webhooks (default: this site's own receiver).
SANDBOX_WEBHOOK_URL = env.str(
    "SANDBOX_WEBHOOK_URL", default=f"http://127.0.0.1:{PORT}/webhooks/cyberdesk/"
)
# Sandbox behaviour: scale of its simulated run durations (2 = twice as slow), the seconds
# between webhook attempts (Svix's schedule), and how long Idempotency-Keys are remembered.
SANDBOX_TIME_SCALE = env.float("SANDBOX_TIME_SCALE", default=1.0)
SANDBOX_WEBHOOK_RETRY_SECONDS = [
    float(seconds)
    for seconds in env.list(
        "SANDBOX_WEBHOOK_RETRY_SECONDS",
        default=["0", "5", "300", "1800", "7200", "18000", "36000", "36000"],
    )
]
SANDBOX_IDEMPOTENCY_TTL_HOURS = env.float("SANDBOX_IDEMPOTENCY_TTL_HOURS", default=24)
# Tests only, never from the environment: lets a test hold the sandbox's clock and move it by
# hand (launcher/sandbox/clock.py), so a browser journey sees each run phase as long as it needs.
SANDBOX_TEST_CLOCK = False

# Launcher behaviour
# How long after its launch the reconciler may re-send a run whose outcome it never heard, with
# the same idempotency key: only while the API surely still remembers the key. Older ones are
# looked up in the run list instead, never re-sent. Seconds, or with a unit: 90m, 1h, 3600s.
IDEMPOTENCY_REPLAY_WINDOW = _duration(env.str("IDEMPOTENCY_REPLAY_WINDOW", default="1h"))
RUN_REFRESH_INTERVAL_SECONDS = env.float("RUN_REFRESH_INTERVAL_SECONDS", default=2.0)
MODEL_CATALOG_MAX_AGE_SECONDS = env.int("MODEL_CATALOG_MAX_AGE_SECONDS", default=600)
WORKFLOW_MIRROR_MAX_AGE_SECONDS = env.int("WORKFLOW_MIRROR_MAX_AGE_SECONDS", default=60)
FILE_INPUT_MAX_BYTES = env.int("FILE_INPUT_MAX_BYTES", default=5 * 1024 * 1024)
BATCH_CONCURRENCY = env.int("BATCH_CONCURRENCY", default=8)
BATCH_MAX_RUNS = env.int("BATCH_MAX_RUNS", default=1000)  # runs per batch, after expansion
# Sending tasks enqueued per batch: how many db_worker processes may send one batch at once.
BATCH_SENDERS = env.int("BATCH_SENDERS", default=4)
DATA_UPLOAD_MAX_MEMORY_SIZE = FILE_INPUT_MAX_BYTES * 2
# Guarded promotion: finished runs a candidate version needs in one batch (or canary) before a
# protected label such as `production` may move to it (launcher.services.promotion).
PROMOTION_MIN_RUNS = env.int("PROMOTION_MIN_RUNS", default=20)
# Canary: finished candidate runs before its first look; each later look waits for twice as
# many (launcher.services.canary).
CANARY_FIRST_LOOK_RUNS = env.int("CANARY_FIRST_LOOK_RUNS", default=10)
