import json

import httpx
import pytest

from launcher.cyberdesk import CyberdeskClient

BASE_URL = "https://cyberdesk.test/sandbox"
API_KEY = "sk_test_secret_key_123"


class FakeApi:
    """A MockTransport handler that answers from a queue and records every request.

    Queue items are httpx.Response objects, exceptions to raise (e.g. httpx.ConnectError), or
    callables taking the request."""

    def __init__(self):
        self.queue = []
        self.requests = []

    def reply(self, *responses):
        self.queue.extend(responses)
        return self

    def __call__(self, request):
        self.requests.append(request)
        if not self.queue:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        item = self.queue.pop(0)
        if isinstance(item, Exception):
            raise item
        if callable(item):
            return item(request)
        return item

    @property
    def last(self):
        return self.requests[-1]

    def body(self, index=-1):
        return json.loads(self.requests[index].content)


class SleepRecorder:
    def __init__(self):
        self.calls = []

    def __call__(self, seconds):
        self.calls.append(seconds)


@pytest.fixture
def api():
    return FakeApi()


@pytest.fixture
def slept():
    return SleepRecorder()


@pytest.fixture
def client(api, slept):
    # random() == 1.0 makes the jittered backoff its ceiling: 0.5 s, 1 s, 2 s …
    client = CyberdeskClient(
        base_url=BASE_URL,
        api_key=API_KEY,
        transport=httpx.MockTransport(api),
        sleep=slept,
        random=lambda: 1.0,
    )
    yield client
    client.close()
