"""The process-wide client: one per settings, rebuilt when tests point elsewhere."""

import threading

import httpx

from launcher.cyberdesk import CyberdeskClient, close_client, get_client, use_transport
from tests.cyberdesk import payloads


def test_the_same_client_is_reused_so_connections_stay_open(settings):
    settings.CYBERDESK_BASE_URL = "https://one.test"
    settings.CYBERDESK_API_KEY = "k1"
    assert get_client() is get_client()


def test_changing_the_settings_gives_a_matching_client(settings):
    settings.CYBERDESK_BASE_URL = "https://one.test"
    settings.CYBERDESK_API_KEY = "k1"
    first = get_client()
    settings.CYBERDESK_BASE_URL = "http://127.0.0.1:8123/sandbox"
    second = get_client()
    assert second is not first
    assert second.base_url == "http://127.0.0.1:8123/sandbox"
    settings.CYBERDESK_API_KEY = "k2"
    assert get_client() is not second


def test_threads_share_one_client(settings):
    settings.CYBERDESK_BASE_URL = "https://threads.test"
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(get_client())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in seen}) == 1


def test_a_transport_argument_gives_a_fresh_client_from_settings(settings):
    settings.CYBERDESK_BASE_URL = "https://one.test/prefix"
    settings.CYBERDESK_API_KEY = "k9"
    requests = []

    def handler(request):
        requests.append(request)
        return httpx.Response(200, json=[])

    client = get_client(transport=httpx.MockTransport(handler))
    assert isinstance(client, CyberdeskClient)
    assert client is not get_client()
    client.list_model_configurations()
    assert str(requests[0].url) == "https://one.test/prefix/v1/model-configurations"
    assert requests[0].headers["Authorization"] == "Bearer k9"


def test_use_transport_routes_the_shared_client_and_skips_real_sleeps(settings):
    settings.CYBERDESK_BASE_URL = "https://one.test"
    answers = [httpx.Response(500), httpx.Response(200, json=payloads.run())]
    with use_transport(httpx.MockTransport(lambda request: answers.pop(0))):
        inside = get_client()
        run = inside.get_run(payloads.RUN_ID)

    assert run.status == "success"
    assert answers == []
    assert get_client() is not inside  # back to the real transport


def test_close_client_forgets_the_shared_client(settings):
    settings.CYBERDESK_BASE_URL = "https://close.test"
    first = get_client()
    close_client()
    assert get_client() is not first
