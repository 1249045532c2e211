"""The WSGI application `make bench` serves with gunicorn: the real Launcher, plus two things a
benchmark needs and production must never have.

- `GET /__bench/bare` answers from a bare Django view: no URL resolving, no middleware, no
  database. It is the reference ("the limit") every figure of the status fragment is compared
  with, served by the same gunicorn processes in the same run.
- `GET /__bench/stack` answers from a view that does nothing, reached through the full
  middleware stack with a logged-in session: what any logged-in page pays before its own work.
- A request log: every call that reaches the sandbox (`/sandbox/…`, i.e. every upstream call
  the launcher makes) and every request carrying the `X-Bench-Trace` header is written as one
  line to `$BENCH_DIR/requests-<pid>.log`, with its duration and, for traced requests, how many
  SQL queries it ran. The harness reads these files after each phase (gunicorn runs several
  processes, so counting in memory would see only one of them). Untraced launcher requests
  are passed straight through, so the throughput phases pay nothing for the log.

While `$BENCH_DIR/upstream-latency-ms` exists, every sandbox request first waits that many
milliseconds: the network round trip to the real API, simulated for one figure.

Production serves `launcher.wsgi`, which knows nothing of this module.
"""

import os
import threading
import time

import django
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.http import HttpResponse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "launcher.settings")

BARE_PATH = "/__bench/bare"
STACK_PATH = "/__bench/stack"
TRACE_HEADER = "HTTP_X_BENCH_TRACE"  # X-Bench-Trace: <label>
UPSTREAM_PREFIX = "/sandbox/"


class BenchHandler(WSGIHandler):
    """Django's own handler; only `STACK_PATH` is resolved against the bench's URLs (Django
    honours `request.urlconf`), so the production URLconf stays free of bench endpoints."""

    def get_response(self, request):
        if request.path_info == STACK_PATH:
            request.urlconf = "launcher.bench.urls"
        return super().get_response(request)


django.setup(set_prefix=False)  # what get_wsgi_application() does before building its handler
launcher_application = BenchHandler()

from django.db import connection  # noqa: E402 - after the app registry is ready


def bare_view(request) -> HttpResponse:
    """The least a Django view can do: build a request, return a response."""
    return HttpResponse(b"ok", content_type="text/plain")


class RequestLog:
    """One append-only file per process; a line per logged request (read by `requestlog.py`)."""

    def __init__(self, directory: str | None):
        self.directory = directory
        self._lock = threading.Lock()
        self._file = None
        self._pid = None

    def write(self, line: str) -> None:
        if not self.directory:
            return
        with self._lock:
            if self._pid != os.getpid():  # opened lazily, after gunicorn forked the worker
                self._pid = os.getpid()
                path = os.path.join(self.directory, f"requests-{self._pid}.log")
                self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._file.write(line)


request_log = RequestLog(os.environ.get("BENCH_DIR"))


def simulated_latency_seconds() -> float:
    directory = os.environ.get("BENCH_DIR")
    if not directory:
        return 0.0
    try:
        with open(os.path.join(directory, "upstream-latency-ms"), encoding="utf-8") as file:
            return float(file.read().strip() or 0) / 1000
    except (OSError, ValueError):
        return 0.0


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == BARE_PATH:
        response = bare_view(WSGIRequest(environ))
        start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        return response

    label = environ.get(TRACE_HEADER)
    if label is not None:
        label = "".join(ch for ch in label if ch.isalnum() or ch in "-_.:")[:60] or "traced"
    upstream = path.startswith(UPSTREAM_PREFIX)
    if label is None and not upstream:
        return launcher_application(environ, start_response)

    status_line = []

    def recording_start_response(status, headers, exc_info=None):
        status_line.append(status)
        return start_response(status, headers, exc_info)

    queries = [0]

    def count_query(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    if upstream and (delay := simulated_latency_seconds()):
        time.sleep(delay)
    started = time.perf_counter()
    if label is not None:
        with connection.execute_wrapper(count_query):
            response = launcher_application(environ, recording_start_response)
    else:
        response = launcher_application(environ, recording_start_response)
    elapsed_ms = (time.perf_counter() - started) * 1000
    status = status_line[0].split(" ", 1)[0] if status_line else "-"
    kind = "upstream" if upstream else "traced"
    key = environ.get("HTTP_IDEMPOTENCY_KEY", "-") or "-"
    # time kind label method status elapsed_ms queries idempotency_key path
    request_log.write(
        f"{time.time():.6f} {kind} {label or '-'} {environ.get('REQUEST_METHOD', '-')} {status} "
        f"{elapsed_ms:.3f} {queries[0] if label is not None else -1} {key} {path}\n"
    )
    return response
