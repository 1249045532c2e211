"""Whether the Cyberdesk API answered lately, so pages stop waiting on it while it is down.

A page refreshes what it shows from the API (a run's status, a list's unfinished runs) only
when that is cheap. When a call could not reach the API, the outage is noted here for
`API_UNAVAILABLE_SECONDS`; pages then skip their refresh, answer from the database at their
usual speed, and say what is unavailable ("showing the status last seen at …"). The first
success clears the note. The worker and the reconciler keep trying on their own schedules.

The note lives in the cache: with a shared `CACHE_URL` every process learns of the outage from
the first one that met it; with the per-process default each process learns it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from launcher.cyberdesk import errors

API_UNAVAILABLE_SECONDS = 30
_KEY = "launcher:api-unavailable"


@dataclass(frozen=True)
class ApiOutage:
    since: datetime
    reason: str

    @property
    def message(self) -> str:
        return f"Cyberdesk is unreachable ({self.reason})"


def api_outage() -> ApiOutage | None:
    """The outage noted within the last `API_UNAVAILABLE_SECONDS`, if any (one cache read)."""
    value = cache.get(_KEY)
    if not isinstance(value, dict):
        return None
    return ApiOutage(since=value["since"], reason=value["reason"])


def api_outage_note(exc: errors.CyberdeskError) -> None:
    """Note an outage when `exc` says the API could not be reached or did not answer (a 4xx
    is an answer: the API is up). The first failure's time is kept while the outage lasts."""
    if not isinstance(exc, errors.Unavailable):
        return
    reason = "no answer" if "did not answer" in str(exc) else "could not connect"
    if exc.status_code:
        reason = f"HTTP {exc.status_code}"
    current = cache.get(_KEY)
    since = current["since"] if isinstance(current, dict) else timezone.now()
    cache.set(_KEY, {"since": since, "reason": reason}, API_UNAVAILABLE_SECONDS)


def api_outage_clear() -> None:
    """The API answered: forget a noted outage (a read first, so the usual case writes nothing)."""
    if cache.get(_KEY) is not None:
        cache.delete(_KEY)
