"""Settings refuse unsafe production values, and pass Django's deploy checks when real."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "k3Jx9vQ2mLp8Zr4Tn6Wb1Yc7Hd5Fg0Sa-Ue_Io2Pq9Rs8Tt7Vv6Ww5Xx4Yy3Zz2"


def _manage(*args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(
        {"DEBUG": "false", "SECRET_KEY": STRONG_KEY, "ALLOWED_HOSTS": "launcher.example.com"}
    )
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
