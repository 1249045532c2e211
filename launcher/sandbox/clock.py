"""The sandbox's clock: `timezone.now()`, unless a test holds it.

Runs move through their phases by the clock (`lifecycle`). A browser journey drives the sandbox
over real HTTP on the live server, in real time, and must see each phase for as long as it needs
(a "Scheduling" that lasts one second races the page's first poll). So a test can hold the
sandbox's clock and move it by hand:

    with held_clock() as sandbox_clock:       # the sandbox's time stops here
        ...launch; the run stays "scheduling" as long as the test likes...
        sandbox_clock.advance(seconds=5)      # now it is "running"

Only the sandbox's run lifecycle reads this clock; Launcher keeps real time. It is a test-only
control: `held_clock()` refuses unless `settings.SANDBOX_TEST_CLOCK` is on, which only the test
fixtures turn on (it is not read from the environment), and there is no endpoint for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone


class HeldClock:
    """A clock that moves only when told (thread-safe: the live server reads it)."""

    def __init__(self, start: datetime):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


_held: HeldClock | None = None


def now() -> datetime:
    """The sandbox's current time."""
    held = _held
    if held is not None and getattr(settings, "SANDBOX_TEST_CLOCK", False):
        return held.now()
    return timezone.now()


@contextmanager
def held_clock(start: datetime | None = None) -> Iterator[HeldClock]:
    """Hold the sandbox's clock at `start` (default: now) for the block; tests only."""
    global _held
    if not getattr(settings, "SANDBOX_TEST_CLOCK", False):
        raise ImproperlyConfigured(
            "The sandbox's clock can be held only with SANDBOX_TEST_CLOCK on"
        )
    _held = HeldClock(start or timezone.now())
    try:
        yield _held
    finally:
        _held = None
