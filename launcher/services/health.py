"""Health probes used by /healthz."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from launcher.cyberdesk import CyberdeskClient, errors, get_client

API_HEALTH_CACHE_SECONDS = 30.0


class ApiHealthProbe:
    """Asks Cyberdesk at most once per `cache_seconds` per process.

    /healthz is polled by load balancers every few seconds on every instance; without the cache
    each poll would be an API call against the organization's rate limit. The result is keyed on
    the client, so a test (or a settings change) that points at another API is probed afresh.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = API_HEALTH_CACHE_SECONDS,
        client_factory: Callable[[], CyberdeskClient] = get_client,
    ) -> None:
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._client_factory = client_factory
        self._lock = threading.Lock()
        self._client: CyberdeskClient | None = None
        self._checked_at = 0.0
        self._result = ""

    def __call__(self) -> str:
        client = self._client_factory()
        with self._lock:
            fresh = self._client is client and (
                self._clock() - self._checked_at < self._cache_seconds
            )
            if fresh:
                return self._result
            # Probing under the lock: concurrent polls wait for one probe instead of each
            # sending their own; the probe's own timeout (2 s) bounds the wait.
            self._result = _probe(client)
            self._client = client
            self._checked_at = self._clock()
            return self._result


def _probe(client: CyberdeskClient) -> str:
    try:
        client.check_health()
    except errors.CyberdeskError as exc:
        # Class and status only: /healthz is public, so no URLs, keys or API wording.
        status = f" (HTTP {exc.status_code})" if exc.status_code else ""
        return f"error: {exc.__class__.__name__}{status}"
    return "ok"


_api_health = ApiHealthProbe()


def api_health() -> str:
    """'ok' when the Cyberdesk API answers an authenticated read, else a short 'error: …'."""
    return _api_health()
