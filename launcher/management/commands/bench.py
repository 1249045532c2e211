"""`manage.py bench` (`make bench`): measure Launcher under load and print every figure next to
its reference. What is measured, and why the app holds up, is in docs/benchmarks.md.

The command runs in two processes:

1. this one (your settings) makes a throwaway world — a temporary directory, a SQLite file in
   it or a fresh PostgreSQL database on the server `DATABASE_URL` names, a free loopback port —
   and starts itself again inside that world with `--inside`, then cleans up;
2. the inner one (production settings: DEBUG off, a random key, the sandbox as the API)
   migrates and seeds the bench database, starts gunicorn on loopback, drives the load (wrk
   and `launcher.bench.paced`, separate processes, each bounded in time) and prints the table.

Your own database is never touched.
"""

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from urllib.parse import quote

import gunicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from launcher.bench import load, workers
from launcher.bench.figures import (
    Bench,
    Plan,
    Row,
    bench_models_fixture,
    figure_amplification_run_list,
    figure_amplification_run_pages,
    figure_bare_reference,
    figure_batch,
    figure_launch,
    figure_runs_list,
    figure_status,
    operator_session,
    runs_wait_running,
    table,
)
from launcher.bench.history import figure_history, history_runs_default
from launcher.bench.machine import machine_description
from launcher.bench.pages import figure_polls_unchanged
from launcher.bench.server import (
    QUICK_TIME_SCALE,
    TIME_SCALE,
    BenchDatabase,
    BenchServer,
    ServerShape,
    bench_environment,
    free_port,
)


class Command(BaseCommand):
    help = "Measure Launcher under load (gunicorn on loopback, the sandbox) and print the figures."

    def add_arguments(self, parser):
        parser.add_argument(
            "--quick",
            action="store_true",
            help="Short phases and a small batch: a smoke run for development, not figures.",
        )
        parser.add_argument(
            "--keep", action="store_true", help="Keep the bench directory (logs) afterwards."
        )
        parser.add_argument(
            "--only",
            default="",
            help="Comma-separated figure prefixes to measure (e.g. 5c,5e); the rest are skipped.",
        )
        parser.add_argument(
            "--history-runs",
            type=int,
            default=None,
            help="Runs in the history phase's large history (default 50,000 on SQLite, "
            "100,000 on PostgreSQL; 1000000 for the full PostgreSQL figure). 0 skips the phase.",
        )
        parser.add_argument("--inside", help=argparse.SUPPRESS)

    def handle(
        self, *args, quick=False, keep=False, inside=None, only="", history_runs=None, **options
    ):
        if inside:
            self._measure(Path(inside), quick=quick, only=only, history_runs=history_runs)
        else:
            self._prepare_and_run(quick=quick, keep=keep, only=only, history_runs=history_runs)

    # --- Outer process: the throwaway world ----------------------------------------------------

    def _prepare_and_run(
        self, *, quick: bool, keep: bool, only: str = "", history_runs: int | None = None
    ) -> None:
        if not load.wrk_available():
            raise CommandError(
                "wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk "
                "(`make bench` installs it by itself when run as root)."
            )
        directory = Path(tempfile.mkdtemp(prefix="launcher-bench-"))
        configured = settings.DATABASES["default"]
        # PostgreSQL configured: a fresh database on that server. Anything else: SQLite.
        configured_url = (
            _postgres_url(configured) if configured["ENGINE"].endswith("postgresql") else ""
        )
        database = BenchDatabase.create(directory=directory, configured_url=configured_url)
        port = free_port()
        env = bench_environment(
            database_url=database.url,
            port=port,
            directory=directory,
            time_scale=QUICK_TIME_SCALE if quick else TIME_SCALE,
        )
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bench"]
        command += ["--inside", str(directory)] + (["--quick"] if quick else [])
        command += ["--only", only] if only else []
        if history_runs is not None:
            command += ["--history-runs", str(history_runs)]
        try:
            done = subprocess.run(command, env=env, cwd=settings.BASE_DIR)  # noqa: S603
        finally:
            database.drop()
            if keep:
                self.stderr.write(f"Bench files kept in {directory}")
            else:
                shutil.rmtree(directory, ignore_errors=True)
        if done.returncode:
            raise CommandError(f"The bench failed (exit status {done.returncode}).")

    # --- Inner process: set the scene, measure, print -------------------------------------------

    def _measure(
        self, directory: Path, *, quick: bool, only: str = "", history_runs: int | None = None
    ) -> None:
        started = time.monotonic()
        # The harness's own API calls (setup, waiting for runs) need no line each.
        logging.getLogger("launcher").setLevel(logging.WARNING)
        plan = Plan.quick() if quick else Plan.full()
        self.stderr.write("Preparing the bench database (migrate, static files, sandbox data)…")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("seed_sandbox", verbosity=0)
        call_command("loaddata", str(bench_models_fixture(directory, 10)), verbosity=0)

        shape = ServerShape()
        server = BenchServer(
            port=settings.PORT, env=dict(os.environ), directory=directory, shape=shape
        )
        server.start()
        self.stderr.write(
            f"gunicorn is serving on {server.base} ({shape.workers} workers × "
            f"{shape.threads} threads); measuring…"
        )
        bench = Bench(base=server.base, directory=directory, plan=plan)
        failed = []
        reference = {}

        def measure(name: str, step) -> None:
            """Run one step; a failure becomes a "not measured" row and the rest goes on."""
            if only and not any(name.startswith(prefix) for prefix in only.split(",")):
                return
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - reported in the table and on stderr
                failed.append(name)
                self.stderr.write(f"{name} failed:\n{traceback.format_exc()}")
                bench.rows.append(Row(name, f"not measured: {exc}", "—", "—", "not measured"))

        try:
            bench.browser = operator_session(server.base)
            measure("4. Launch", lambda: figure_launch(bench))
            measure("1. Bare view", lambda: reference.update(figure_bare_reference(bench)))
            measure(
                "Runs reaching 'running'",
                lambda: runs_wait_running(bench.launched[:21], timeout=120, say=bench.say),
            )
            measure("1. Status fragment", lambda: figure_status(bench, reference))
            measure("1d, 2d. Polls, nothing new", lambda: figure_polls_unchanged(bench, reference))
            measure("3a. Run pages", lambda: figure_amplification_run_pages(bench))
            measure("3b. Runs list", lambda: figure_amplification_run_list(bench))
            measure("5. Batch", lambda: figure_batch(bench))
            measure("2. Runs list", lambda: figure_runs_list(bench, reference))
            measure("5c. Two db_workers", lambda: workers.figure_batch_workers(bench))
            measure("5d. Planning", lambda: workers.figure_batch_planning(bench))
            measure("5e. kill -9 mid-batch", lambda: workers.figure_recovery_batch(bench))
            measure("5f. kill -9 mid-pass", lambda: workers.figure_recovery_reconciler(bench))
            measure("5g. Webhook rate", lambda: workers.figure_webhook_rate(bench))
            # Last: it fills the database with history (the figures above want it small).
            if history_runs is None:
                history_runs = 5_000 if quick else history_runs_default()
            if history_runs:
                measure("H. History", lambda: figure_history(bench, runs=history_runs))
        finally:
            server.stop()

        description = machine_description(
            server_shape=f"gunicorn {gunicorn.__version__}, gthread, {shape.workers} workers × "
            f"{shape.threads} threads, loopback"
        )
        self.stdout.write("")
        self.stdout.write("Machine")
        for name, value in description:
            self.stdout.write(f"  {name:9} {value}")
        self.stdout.write("")
        self.stdout.write(table(sorted(bench.rows, key=lambda row: row.figure)))
        self.stdout.write("")
        self.stdout.write(
            f"{'Quick smoke run: not comparable figures. ' if quick else ''}"
            f"Total {time.monotonic() - started:.0f} s."
        )
        if failed:
            raise CommandError(f"Not measured: {', '.join(failed)} (see the errors above).")


def _postgres_url(config: dict) -> str:
    user = quote(config.get("USER") or "", safe="")
    password = f":{quote(config['PASSWORD'], safe='')}" if config.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = config.get("HOST") or "127.0.0.1"
    port = config.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{config['NAME']}"
