"""Every kept counter beside the runs, moved by one call at each write that moves a run.

The kept counters (`KEPT_COUNTERS`, each declared as a `kept_counters.KeptCounter` in its own
module): the prompts page's per-version numbers and duration buckets
(`services/prompt_rollups`), the batch pages' per-cell numbers and `Batch.run_count`
(`services/batch_cell_rollups`). Each write calls in here inside its own transaction, so the
counters and the runs never disagree:

- a launch: `Run.save()` on insert calls `rollups_count_launched`; a batch plan's bulk insert
  calls `rollups_count_inserted`;
- an upstream answer (`run_sync`'s locked apply): `rollups_snapshot` of the run as read under
  the lock, then `rollups_record` once written (one run), or a chunk's many runs collected in
  a `RollupMoves` and applied once;
- a cost arriving later (`run_sync.run_cost_fetch`): the same snapshot and record.

A run counts once, as its latest attempt: a retry clears the finished attempt's status,
results and cost, so the difference takes them back out; the new attempt adds its own when it
ends. `rollups_rebuild` recomputes every counter from the runs (`seed_history` after its bulk
insert, `manage.py prompt_rollups_rebuild` for anyone who doubts them).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from launcher.models import Run
from launcher.services import kept_counters
from launcher.services.batch_cell_rollups import BATCH_CELL_COUNTERS
from launcher.services.prompt_rollups import PROMPT_VERSION_COUNTERS

# In the order every writer moves them (and the rebuild locks them): one lock order for
# concurrent writers.
KEPT_COUNTERS: tuple[kept_counters.KeptCounter, ...] = (
    PROMPT_VERSION_COUNTERS,
    BATCH_CELL_COUNTERS,
)

RunSnapshot = tuple[kept_counters.Contribution, ...]  # one contribution per kept counter


def rollups_snapshot(run: Run) -> RunSnapshot:
    """What `run`, as it stands in memory, adds to every kept counter: take it when the run is
    read (under its lock), before changing it."""
    return tuple(counter.contribution(run) for counter in KEPT_COUNTERS)


class RollupMoves:
    """How a transaction's runs moved since their snapshots, per kept counter and row,
    applied once for all of them (a chunk's many runs cost a query per row moved, not per
    run)."""

    def __init__(self) -> None:
        self._deltas: list[kept_counters.Deltas] = [{} for _ in KEPT_COUNTERS]

    def add(self, run: Run, before: RunSnapshot) -> None:
        for counter, deltas, counted in zip(KEPT_COUNTERS, self._deltas, before, strict=True):
            counter.delta_add(deltas, run, counted)

    def apply(self) -> None:
        """Add the differences; call inside the transaction that wrote the runs."""
        for counter, deltas in zip(KEPT_COUNTERS, self._deltas, strict=True):
            counter.apply(deltas)


def rollups_record(run: Run, before: RunSnapshot) -> None:
    """Add how one run moved since `before` to every kept counter; call inside the
    transaction that wrote the run."""
    moves = RollupMoves()
    moves.add(run, before)
    moves.apply()


def rollups_count_launched(runs: Iterable[Run]) -> None:
    """Count newly inserted runs (launches) on every kept counter, with whatever they already
    carry. Call in the inserting transaction."""
    runs = list(runs)
    for counter in KEPT_COUNTERS:
        counter.count_launched(runs)


def rollups_count_inserted(inserted: QuerySet) -> None:
    """`rollups_count_launched` for runs inserted without model instances (a batch plan's bulk
    insert: `inserted` is just those runs, pending). Call in the inserting transaction."""
    for counter in KEPT_COUNTERS:
        counter.count_inserted(inserted)


def rollups_rebuild() -> dict[str, int]:
    """Recompute every kept counter from the runs (replacing what was kept), in one
    transaction with all their tables locked (`kept_counters.rebuild_lock`); return how many
    rows each made, by counter name. Run it after writes that skip the hooks (bulk inserts
    such as `seed_history`), or to check the counters."""
    tables = [table for counter in KEPT_COUNTERS for table in counter.tables]
    with kept_counters.rebuild_lock(tables):
        return {counter.name: counter.recount() for counter in KEPT_COUNTERS}
