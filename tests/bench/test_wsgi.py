"""The bench server's WSGI entry: a bare reference view beside the real app, and a request log
of upstream calls and traced requests. Production never serves any of it."""

import io

import pytest
from django.core import signals
from django.db import close_old_connections

from launcher.bench import wsgi


def _call(application, path, *, method="GET", headers=None):
    """Call the WSGI app as a server would, but keep the test's database connection open.

    Like Django's test client: request signals would otherwise close the connection at the
    end of the request (it is inside the test's transaction, so Django deems it unusable).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        return _call_wsgi(application, path, method=method, headers=headers)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _call_wsgi(application, path, *, method, headers):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        **(headers or {}),
    }
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = status
        answer["headers"] = dict(response_headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.fixture
def request_log(tmp_path, monkeypatch):
    log = wsgi.RequestLog(str(tmp_path))
    monkeypatch.setattr(wsgi, "request_log", log)
    monkeypatch.setenv("BENCH_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.django_db
def test_the_bare_view_answers_without_middleware_or_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        status, headers, body = _call(wsgi.application, wsgi.BARE_PATH)

    assert status == "200 OK"
    assert body == b"ok"
    # No middleware ran: none of the security headers the real stack adds.
    assert "Content-Security-Policy" not in headers
    assert "X-Frame-Options" not in headers


@pytest.mark.django_db
def test_everything_else_goes_through_the_real_application():
    status, headers, _ = _call(wsgi.application, "/runs/")

    assert status.startswith("302")  # LoginRequiredMiddleware: not logged in
    assert "/accounts/login/" in headers["Location"]


@pytest.mark.django_db
def test_the_stack_view_runs_the_whole_middleware_stack_for_a_logged_in_user(operator_client):
    session = operator_client.cookies["sessionid"].value

    status, headers, body = _call(
        wsgi.application, wsgi.STACK_PATH, headers={"HTTP_COOKIE": f"sessionid={session}"}
    )
    assert (status, body) == ("200 OK", b"ok")
    assert "Content-Security-Policy" in headers

    anonymous_status, _, _ = _call(wsgi.application, wsgi.STACK_PATH)
    assert anonymous_status.startswith("302")  # LoginRequiredMiddleware ran


@pytest.mark.django_db
@pytest.mark.parametrize("path", [wsgi.BARE_PATH, wsgi.STACK_PATH])
def test_production_has_no_bench_endpoint(operator_client, path):
    assert operator_client.get(path).status_code == 404


@pytest.mark.django_db
def test_traced_requests_are_logged_with_their_query_count(request_log, operator_client):
    from launcher.bench.requestlog import read_log

    session = operator_client.cookies["sessionid"].value
    _call(
        wsgi.application,
        "/runs/",
        headers={"HTTP_X_BENCH_TRACE": "list page", "HTTP_COOKIE": f"sessionid={session}"},
    )

    (record,) = read_log(request_log)
    assert record.kind == "traced"
    assert record.label == "listpage"  # only safe characters reach the log line
    assert record.path == "/runs/"
    assert record.status == "200"
    assert record.queries >= 3  # session, user, runs at least


@pytest.mark.django_db
def test_untraced_launcher_requests_are_not_logged(request_log):
    _call(wsgi.application, "/runs/")
    _call(wsgi.application, wsgi.BARE_PATH)

    assert list(request_log.glob("requests-*.log")) == []


@pytest.mark.django_db
def test_calls_reaching_the_sandbox_are_logged_with_their_key(request_log):
    from launcher.bench.requestlog import read_log, upstream_calls

    _call(
        wsgi.application,
        "/sandbox/v1/runs",
        method="POST",
        headers={"HTTP_IDEMPOTENCY_KEY": "key-1", "HTTP_AUTHORIZATION": "Bearer wrong"},
    )
    _call(wsgi.application, "/sandbox/v1/runs")

    records = read_log(request_log)
    assert upstream_calls(records) == {"create_run": 1, "list_runs": 1}
    assert {record.idempotency_key for record in records} == {"key-1", "-"}


def test_the_simulated_latency_is_read_from_the_bench_directory(request_log):
    assert wsgi.simulated_latency_seconds() == 0.0
    (request_log / "upstream-latency-ms").write_text("50")

    assert wsgi.simulated_latency_seconds() == 0.05
