"""Reading wrk's report, and the paced load generator's schedule and measurements."""

import http.server
import math
import threading

import pytest

from launcher.bench import paced
from launcher.bench.load import percentile, wrk_parse

WRK_REPORT = """\
Running 10s test @ http://127.0.0.1:8123/runs/1/status
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.34ms    5.67ms 120.00ms   80.00%
    Req/Sec   405.12     30.00   500.00     70.00%
  Latency Distribution
     50%  950.00us
     75%   12.00ms
     90%   20.00ms
     99%    1.20s
  8102 requests in 10.00s, 12.34MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    810.20
Transfer/sec:      1.23MB
"""


def test_it_reads_throughput_latencies_and_failures_from_wrk():
    result = wrk_parse(WRK_REPORT)

    assert result.requests_per_second == 810.20
    assert result.p50_ms == pytest.approx(0.95)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.requests == 8102
    assert result.non_2xx_3xx == 4
    assert result.socket_errors == 3


def test_an_unreadable_wrk_report_is_an_error():
    with pytest.raises(ValueError, match="Unreadable wrk output"):
        wrk_parse("unable to connect to 127.0.0.1:8123 Connection refused")


def test_percentiles_are_nearest_rank():
    values = [float(n) for n in range(1, 101)]

    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_a_viewer_opens_the_page_once_then_polls_on_schedule():
    plan = {
        "duration": 5,
        "streams": [
            {"first": "/runs/1/", "path": "/runs/1/status", "interval": 2, "offset": 0.5},
            {"path": "/bare", "interval": 2.5, "offset": 0},
        ],
    }

    assert paced.schedule(plan) == [
        (0, "/bare"),
        (0.5, "/runs/1/"),
        (2.5, "/runs/1/status"),
        (2.5, "/bare"),
        (4.5, "/runs/1/status"),
    ]


@pytest.fixture
def tiny_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            status = 200 if self.path == "/ok" else 404
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_paced_generator_counts_answers_by_status_after_the_warmup(tiny_server):
    result = paced.run(
        {
            "base": tiny_server,
            "duration": 0.3,
            "warmup": 0.1,
            "workers": 2,
            "streams": [
                {"path": "/ok", "interval": 0.05, "offset": 0},
                {"path": "/missing", "interval": 0.1, "offset": 0.01},
            ],
        }
    )

    assert result["scheduled"] == 9
    assert result["scheduled_counted"] == 6  # 4 × /ok and 2 × /missing from 0.1 s on
    assert result["statuses"] == {"200": 4, "404": 2}
    assert len(result["latencies_ms"]) == 6
    assert all(latency >= 0 for latency in result["latencies_ms"])
