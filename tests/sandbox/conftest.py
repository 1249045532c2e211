"""Fixtures for the sandbox tests: demo data, an API client with the sandbox key, frozen time,
and a real HTTP webhook receiver."""

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.test import Client

from launcher.sandbox.seed import seed_demo_data

API_KEY = "sk_sandbox"


class SandboxApi:
    """The sandbox over Django's test client, with the Bearer key and JSON bodies."""

    def __init__(self, key: str = API_KEY):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {key}"}

    def _url(self, path: str) -> str:
        return f"/sandbox/v1/{path.lstrip('/')}"

    def get(self, path: str, params=None, **headers):
        return self.client.get(self._url(path), params or {}, headers={**self.headers, **headers})

    def _write(self, method: str, path: str, body, headers):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return getattr(self.client, method)(
            self._url(path),
            data=data if body is not None else "",
            content_type="application/json",
            headers={**self.headers, **headers},
        )

    def post(self, path: str, body=None, **headers):
        return self._write("post", path, body, headers)

    def patch(self, path: str, body=None, **headers):
        return self._write("patch", path, body, headers)


@pytest.fixture
def demo(db):
    seed_demo_data()


@pytest.fixture
def api(demo):
    return SandboxApi()


@pytest.fixture
def clock():
    """Frozen time that tests move by hand: clock.shift(seconds)."""
    with time_machine.travel(datetime(2025, 3, 3, 9, 0, tzinfo=UTC), tick=False) as traveller:
        yield traveller


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records each request and answers with the next
    status code from `answers` (200 when none are left)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver(settings):
    with WebhookReceiver() as receiver:
        settings.SANDBOX_WEBHOOK_URL = receiver.url
        yield receiver
