"""`make run`'s console (issue 14): one line per request at most — no static 304, no second
line for a sandbox call, nothing from the worker's idle bookkeeping — and warnings always."""

import logging

import pytest
from django.conf import settings

from launcher.console import QuietConsole


def _server(request_line: str, status: int, level=logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord(
        "django.server", level, __file__, 1, '"%s" %s %s', (request_line, str(status), "0"), None
    )
    record.status_code = status
    return record


@pytest.mark.parametrize(
    "record, shown",
    [
        (_server("GET /runs/ HTTP/1.1", 200), True),
        (_server("GET /static/launcher/app.css HTTP/1.1", 304), False),
        (_server("GET /runs/5/status HTTP/1.1", 304), False),
        (_server("GET /sandbox/v1/runs/abc HTTP/1.1", 200), False),  # the client logs it
        (_server("GET /static/launcher/gone.css HTTP/1.1", 404, logging.WARNING), True),
        (_server("GET /sandbox/v1/runs HTTP/1.1", 500, logging.ERROR), True),
    ],
)
def test_request_lines(record, shown):
    assert QuietConsole().filter(record) is shown


def test_the_workers_bookkeeping_is_dropped_but_its_failures_show():
    started = logging.LogRecord("django_tasks", logging.INFO, __file__, 1, "Task started", (), None)
    idle = logging.LogRecord("django_tasks_db", logging.INFO, __file__, 1, "Starting", (), None)
    failed = logging.LogRecord("django_tasks", logging.ERROR, __file__, 1, "Task failed", (), None)
    ours = logging.LogRecord("launcher.services.batches", logging.INFO, __file__, 1, "x", (), None)

    assert [QuietConsole().filter(r) for r in (started, idle, failed, ours)] == [
        False,
        False,
        True,
        True,
    ]


def test_runservers_lines_go_through_the_filter():
    assert settings.LOGGING["loggers"]["django.server"]["handlers"] == ["server"]
    assert settings.LOGGING["handlers"]["server"]["filters"] == ["quiet_console"]
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["quiet_console"]


@pytest.mark.django_db
def test_an_idle_reconciler_pass_says_nothing_at_info(caplog):
    from launcher.services.reconcile import runs_reconcile

    with caplog.at_level(logging.INFO, logger="launcher.services.reconcile"):
        runs_reconcile()

    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
