"""The bench's own world: a throwaway database, the environment the server runs with, and the
gunicorn process serving `launcher.bench.wsgi` on loopback."""

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ

# The sandbox's runs last SANDBOX_TIME_SCALE times their demo length: a "slow" run then spends
# ~30-45 s scheduling and 3-5 minutes running, so the runs watched by figures 1 and 3 are still
# running when those figures are measured.
TIME_SCALE = 12
QUICK_TIME_SCALE = 4  # `--quick`: shorter phases, so the runs need not live as long
REFRESH_INTERVAL_SECONDS = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class BenchDatabase:
    """A database only this bench run uses: a SQLite file in the bench directory, or a fresh
    PostgreSQL database on the server `DATABASE_URL` names (dropped afterwards)."""

    url: str
    engine: str  # "sqlite" or "postgresql"
    _admin_url: str | None = None
    _name: str | None = None

    @classmethod
    def create(cls, *, directory: Path, configured_url: str) -> "BenchDatabase":
        if configured_url.startswith(("postgres://", "postgresql://", "pgsql://")):
            name = f"launcher_bench_{os.getpid()}_{secrets.token_hex(3)}"
            parts = urlsplit(configured_url)
            admin_url = urlunsplit(parts._replace(path="/postgres"))
            with _pg_connect(admin_url) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
            url = urlunsplit(parts._replace(path=f"/{name}"))
            return cls(url=url, engine="postgresql", _admin_url=admin_url, _name=name)
        return cls(url=f"sqlite:///{directory / 'bench.sqlite3'}", engine="sqlite")

    def drop(self) -> None:
        if self.engine != "postgresql":
            return  # the file goes with the bench directory
        with _pg_connect(self._admin_url) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')


def _pg_connect(url: str):
    import psycopg

    config = environ.Env.db_url_config(url)
    return psycopg.connect(
        host=config.get("HOST") or "127.0.0.1",
        port=config.get("PORT") or 5432,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname=config["NAME"],
        autocommit=True,
    )


def bench_environment(
    *, database_url: str, port: int, directory: Path, time_scale: float = TIME_SCALE
) -> dict[str, str]:
    """Production settings (DEBUG off, a strong random key), on plain HTTP on loopback, with
    the sandbox as the API — for the harness and the gunicorn processes alike."""
    base = f"http://127.0.0.1:{port}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "launcher.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "CACHE_URL": "",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "SECURE_HSTS_PRELOAD": "false",
        "SANDBOX_ENABLED": "true",
        "SANDBOX_API_KEY": "sk_sandbox",
        "SANDBOX_TIME_SCALE": str(time_scale),
        "SANDBOX_WEBHOOK_URL": f"{base}/webhooks/cyberdesk/",
        "CYBERDESK_API_KEY": "sk_sandbox",
        "CYBERDESK_BASE_URL": f"{base}/sandbox",
        # Svix secrets are standard base64 (a URL-safe token may hold - or _, which the
        # settings check refuses).
        "CYBERDESK_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        "RUN_REFRESH_INTERVAL_SECONDS": str(REFRESH_INTERVAL_SECONDS),
        "PORT": str(port),
        "BENCH_DIR": str(directory),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class ServerShape:
    workers: int = 2
    threads: int = 8


class BenchServer:
    """gunicorn (gthread) serving the bench WSGI app; the launcher calls the sandbox on this
    same server, so it needs threads."""

    def __init__(self, *, port: int, env: dict[str, str], directory: Path, shape: ServerShape):
        self.port = port
        self.env = env
        self.directory = directory
        self.shape = shape
        self.process: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{port}"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "launcher.bench.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(self.shape.workers),
            "--threads",
            str(self.shape.threads),
            "--keep-alive",
            "10",
            "--backlog",
            "256",
            "--log-level",
            "warning",
        ]

    def start(self, *, timeout: float = 60.0) -> None:
        log = open(self.directory / "gunicorn.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.directory / 'gunicorn.log'}")
            try:
                bare = f"{self.base}/__bench/bare"  # http on loopback, built here
                with urllib.request.urlopen(bare, timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer within a minute")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
