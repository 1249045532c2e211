"""Start-up checks for production settings that Django cannot know about.

Registered in `LauncherConfig.ready()`. They run with every management command that runs
checks (`check`, `check --deploy`, `migrate`, `runserver`) and from `launcher/wsgi.py` when a
production server (gunicorn) loads the app: a deployment missing one of these values stops
at start-up, with a message naming the variable, instead of running half-configured.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks

TAG = "launcher"


@checks.register(TAG)
def production_settings_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if settings.DEBUG:
        return []
    problems: list[checks.CheckMessage] = []
    if not settings.CYBERDESK_API_KEY_FROM_ENV:
        # Without a key the client points at the local sandbox, which this site does not serve
        # with DEBUG off: every launch would fail. Even with SANDBOX_ENABLED the fallback stays
        # an error: a production site meant for the real API must not quietly run on the fake.
        problems.append(
            checks.Error(
                "CYBERDESK_API_KEY is not set.",
                hint=(
                    "With DEBUG off, set CYBERDESK_API_KEY to your Cyberdesk API key. To run "
                    "on the local sandbox on purpose, say so in full: SANDBOX_ENABLED=true, "
                    "CYBERDESK_API_KEY=<SANDBOX_API_KEY> and "
                    "CYBERDESK_BASE_URL=<this site>/sandbox."
                ),
                id="launcher.E001",
            )
        )
    if settings.CYBERDESK_WEBHOOKS_EXPECTED:
        secret = settings.CYBERDESK_WEBHOOK_SECRET
        if not secret:
            problems.append(
                checks.Error(
                    "CYBERDESK_WEBHOOK_SECRET is not set, so every run_complete webhook would "
                    "be refused.",
                    hint=(
                        "Set CYBERDESK_WEBHOOK_SECRET to the whsec_… secret of your Svix "
                        "webhook endpoint, or CYBERDESK_WEBHOOKS=false when no endpoint "
                        "points here (the reconciler then polls for every result)."
                    ),
                    id="launcher.E002",
                )
            )
        elif not _is_readable_secret(secret):
            problems.append(
                checks.Error(
                    "CYBERDESK_WEBHOOK_SECRET is not a Svix secret (whsec_ followed by base64).",
                    hint="Copy the signing secret of the webhook endpoint again.",
                    id="launcher.E003",
                )
            )
    return problems


def _is_readable_secret(secret: str) -> bool:
    from standardwebhooks.webhooks import Webhook

    try:
        Webhook(secret)
    except Exception:  # any refusal of the library means webhooks could never be verified
        return False
    return True


def production_settings_errors() -> list[checks.CheckMessage]:
    """The serious problems, for servers that do not run management commands (wsgi.py)."""
    return [message for message in production_settings_check() if message.is_serious()]
