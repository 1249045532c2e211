import httpx
import pytest

from launcher.cyberdesk import CyberdeskClient
from launcher.services.health import ApiHealthProbe


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def probe_answering(*outcomes, clock):
    """A probe whose client gets `outcomes` in turn (responses or exceptions); returns the
    probe and the list of requests it made."""
    requests = []
    queue = list(outcomes)

    def handler(request):
        requests.append(request)
        outcome = queue.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    client = CyberdeskClient(
        base_url="https://api.test", api_key="k", transport=httpx.MockTransport(handler)
    )
    return ApiHealthProbe(clock=clock, client_factory=lambda: client), requests


def ok():
    return httpx.Response(200, json={"items": [], "total": 0, "skip": 0, "limit": 1})


def test_it_is_ok_when_the_api_answers_an_authenticated_read(clock):
    probe, requests = probe_answering(ok(), clock=clock)
    assert probe() == "ok"
    [request] = requests
    assert request.url.path == "/v1/workflows"
    assert request.headers["Authorization"] == "Bearer k"


def test_it_names_the_error_without_leaking_details(clock):
    probe, _ = probe_answering(
        httpx.Response(401, json={"detail": "Invalid key sk_live_secret"}), clock=clock
    )
    assert probe() == "error: AuthError (HTTP 401)"


def test_it_reports_an_unreachable_api_after_a_single_attempt(clock):
    probe, requests = probe_answering(httpx.ConnectError("refused"), clock=clock)
    assert probe() == "error: Unavailable"
    assert len(requests) == 1


def test_it_probes_at_most_once_per_thirty_seconds(clock):
    probe, requests = probe_answering(ok(), httpx.Response(503), clock=clock)
    assert probe() == "ok"
    clock.now += 29.9
    assert probe() == "ok"
    assert len(requests) == 1

    clock.now += 0.2
    assert probe() == "error: Unavailable (HTTP 503)"
    assert len(requests) == 2


def test_a_different_client_is_probed_afresh(clock):
    clients = iter(
        [
            CyberdeskClient(
                base_url="https://a.test",
                api_key="k",
                transport=httpx.MockTransport(lambda r: ok()),
            ),
            CyberdeskClient(
                base_url="https://b.test",
                api_key="k",
                transport=httpx.MockTransport(lambda r: httpx.Response(500)),
            ),
        ]
    )
    probe = ApiHealthProbe(clock=clock, client_factory=lambda: next(clients))
    assert probe() == "ok"
    assert probe() == "error: Unavailable (HTTP 500)"


def test_the_probe_uses_a_short_timeout(clock):
    seen = {}

    def handler(request):
        seen.update(request.extensions["timeout"])
        return ok()

    client = CyberdeskClient(
        base_url="https://a.test", api_key="k", transport=httpx.MockTransport(handler)
    )
    ApiHealthProbe(clock=clock, client_factory=lambda: client)()
    assert max(seen.values()) <= 2.0
