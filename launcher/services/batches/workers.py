"""The thread pool a pass over a batch's runs uses, whether it sends them (`send.py`) or
cancels / retries them (`actions.py`): a shared queue, a pause every thread honours after a
429, and turns at the database on SQLite."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from django.db import connection

from launcher.models import Batch

# One task run works for about this long, then hands over to a fresh task (so a worker asked to
# stop gracefully stops soon, and a dead worker's batch is noticed quickly).
SLICE_SECONDS = 30.0
RATE_LIMIT_DEFAULT_WAIT = 5.0  # a 429 without Retry-After
RATE_LIMIT_MAX_WAIT = 60.0  # longer waits end the slice; the next task starts after the wait
UNREACHABLE_MAX_WAIT = 30.0


class Senders:
    """State shared by the worker threads of one pass over a batch (sending its runs, or
    cancelling / retrying them): the queue, the pause after a 429, the counters of `report`."""

    def __init__(self, ids: Iterable[int], *, deadline: float | None, clock, sleep, report):
        self.queue = deque(ids)
        self.lock = threading.Lock()
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep
        self.paused_until = 0.0
        self.unreachable_streak = 0
        self.stop = False
        self.report = report

    def next_id(self) -> int | None:
        """The next run to send, after any pause; None when done or out of time."""
        while True:
            with self.lock:
                if self.stop or not self.queue:
                    return None
                now = self.clock()
                wait = self.paused_until - now
                if self.deadline is not None and max(now, self.paused_until) >= self.deadline:
                    self.report.resume_in = max(self.report.resume_in, wait)
                    return None
                if wait <= 0:
                    return self.queue.popleft()
            self.sleep(min(wait, 1.0))  # re-check often: another sender may stop the batch

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)

    def put_back(self, run_id: int) -> None:
        with self.lock:
            self.queue.append(run_id)

    def count(self, outcome: str) -> None:
        with self.lock:
            setattr(self.report, outcome, getattr(self.report, outcome) + 1)


def run_workers(
    senders: Senders, batch: Batch, count: int, act: Callable[[Senders, int], None]
) -> None:
    """Call `act(senders, run_id)` for each queued run, `count` threads at a time."""
    if count <= 1:
        _work_loop(senders, act, own_connection=False)
        return
    failures: list[BaseException] = []

    def work():
        try:
            _work_loop(senders, act, own_connection=True)
        except BaseException as exc:  # a dying worker: stop every sender, re-raise below
            senders.stop = True
            failures.append(exc)

    threads = [threading.Thread(target=work, name=f"batch-{batch.pk}-{n}") for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def _work_loop(
    senders: Senders, act: Callable[[Senders, int], None], *, own_connection: bool
) -> None:
    try:
        while (run_id := senders.next_id()) is not None:
            act(senders, run_id)
    finally:
        if own_connection:
            # Each thread has its own database connection; close it or it leaks.
            connection.close()


_SQLITE_TURN = threading.Lock()


@contextmanager
def database_turn():
    """SQLite has one writer at a time (and its in-memory shared-cache mode, used by tests,
    fails at once instead of waiting): there, sender threads take turns at the database. Their
    HTTP calls — the slow part — still overlap. Other databases need no turns."""
    if connection.vendor != "sqlite":
        yield
        return
    with _SQLITE_TURN:
        yield
