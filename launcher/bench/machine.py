"""What the figures were measured on: they mean little without it."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import django
from django.db import connection


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _database() -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0]}"
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]} (WAL)"
    return connection.vendor


def machine_description(*, server_shape: str) -> list[tuple[str, str]]:
    return [
        ("CPU", f"{_cpu_model()} — {os.cpu_count()} logical CPUs (nproc)"),
        ("memory", _memory()),
        ("OS", f"{_os()} ({platform.machine()}, kernel {platform.release()})"),
        ("Python", sys.version.split()[0]),
        ("Django", django.get_version()),
        ("database", _database()),
        ("server", server_shape),
        # Other work on the machine skews every figure; the references share the skew.
        (
            "load avg",
            "{:.2f} {:.2f} {:.2f} (1, 5, 15 min) when the table was printed".format(
                *os.getloadavg()
            ),
        ),
        ("load", _version(["wrk", "-v"]) + "; launcher.bench.paced (fixed rate)"),
    ]
