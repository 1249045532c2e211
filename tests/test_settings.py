"""Settings refuse unsafe production values, and pass Django's deploy checks when real."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "k3Jx9vQ2mLp8Zr4Tn6Wb1Yc7Hd5Fg0Sa-Ue_Io2Pq9Rs8Tt7Vv6Ww5Xx4Yy3Zz2"


WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _manage(*args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    # A complete production configuration; each test takes one value away.
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": STRONG_KEY,
            "ALLOWED_HOSTS": "launcher.example.com",
            "CYBERDESK_API_KEY": "sk_live_example",
            "CYBERDESK_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    )
    env.pop("SANDBOX_ENABLED", None)
    env.pop("CYBERDESK_WEBHOOKS", None)
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_missing_api_key_is_a_deploy_check_error_naming_the_variable():
    result = _manage("check", "--deploy", CYBERDESK_API_KEY="")
    assert result.returncode != 0
    assert "launcher.E001" in result.stderr
    assert "CYBERDESK_API_KEY is not set" in result.stderr


def test_serving_the_sandbox_does_not_excuse_a_missing_api_key():
    result = _manage("check", "--deploy", CYBERDESK_API_KEY="", SANDBOX_ENABLED="true")
    assert result.returncode != 0
    assert "CYBERDESK_API_KEY is not set" in result.stderr


def test_the_sandbox_named_in_full_passes_as_the_bench_runs_it():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SANDBOX_ENABLED="true",
        CYBERDESK_API_KEY="sk_sandbox",
        CYBERDESK_BASE_URL="https://launcher.example.com/sandbox",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_webhook_secret_is_a_deploy_check_error_naming_the_variable():
    result = _manage("check", "--deploy", CYBERDESK_WEBHOOK_SECRET="")
    assert result.returncode != 0
    assert "launcher.E002" in result.stderr
    assert "CYBERDESK_WEBHOOK_SECRET is not set" in result.stderr


def test_no_webhook_secret_is_needed_when_no_webhooks_are_expected():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        CYBERDESK_WEBHOOK_SECRET="",
        CYBERDESK_WEBHOOKS="false",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_production_wsgi_app_refuses_to_load_without_the_api_key():
    """gunicorn runs no system checks: launcher/wsgi.py runs ours."""
    result = _manage("shell", "-c", "import launcher.wsgi", CYBERDESK_API_KEY="")
    assert result.returncode != 0
    assert "CYBERDESK_API_KEY is not set" in result.stderr
    assert _manage("shell", "-c", "import launcher.wsgi").returncode == 0


def test_a_missing_secret_key_stops_start_up_with_debug_off():
    result = _manage("check", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_weak_secret_key_stops_start_up_with_debug_off():
    result = _manage("check", SECRET_KEY="short-and-weak")
    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr


def test_the_development_key_is_refused_with_debug_off():
    result = _manage(
        "check", SECRET_KEY="django-insecure-launcher-development-key-never-use-in-production"
    )
    assert result.returncode != 0
    assert "too weak" in result.stderr


def test_empty_allowed_hosts_stops_start_up_with_debug_off():
    result = _manage("check", ALLOWED_HOSTS="")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is empty" in result.stderr


def test_debug_on_runs_with_the_development_defaults():
    result = _manage("check", DEBUG="true", SECRET_KEY="", ALLOWED_HOSTS="")
    assert result.returncode == 0, result.stderr


def _session_engine(**env_overrides) -> str:
    code = "from django.conf import settings; print(settings.SESSION_ENGINE)"
    result = _manage("shell", "-c", code, **env_overrides)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]  # after "N objects imported" (5.2)


def test_sessions_are_cached_only_in_a_cache_every_process_shares():
    # A shared cache (redis, memcached, files): sessions read from it, written through.
    assert _session_engine(CACHE_URL="redis://127.0.0.1:6379/0") == (
        "django.contrib.sessions.backends.cached_db"
    )
    # Per-process locmem (the default): a logout elsewhere could not clear this process's copy.
    assert _session_engine(CACHE_URL="") == "django.contrib.sessions.backends.db"
    assert _session_engine(CACHE_URL="locmemcache://") == "django.contrib.sessions.backends.db"
