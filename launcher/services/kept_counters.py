"""The machinery every kept counter beside the runs shares (`PromptVersionRollup` and its
duration buckets in `services/prompt_rollups`, `BatchCellRollup` and `Batch.run_count` in
`services/batch_cell_rollups`); `services/rollups` moves them all at once, one call per hook
point.

A kept counter is declared as a `KeptCounter`: what a run contributes, which row it counts on,
and how its rows take differences, launches and a recount. Everything else is here, once: the
differences accumulated per row, the F() increments onto a row made if missing, the sum of what
launched runs already carry, and the rebuild's lock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from django.db import connection, transaction
from django.db.models import F, Model, QuerySet

from launcher.models import Run

Deltas = dict[Hashable, dict[Any, float]]  # {row key: {counter name (or bucket): difference}}


class Contribution:
    """Base of a counter's frozen dataclass of what one run adds to its row: `minus` gives the
    differences by field name, but for the fields named in `NOT_COUNTED` (a counter with more
    to move, the buckets, extends it)."""

    NOT_COUNTED: ClassVar[tuple[str, ...]] = ()

    def minus(self, other: Contribution) -> dict[Any, float]:
        return {
            f.name: getattr(self, f.name) - getattr(other, f.name)
            for f in fields(self)
            if f.name not in self.NOT_COUNTED
        }


@dataclass(frozen=True)
class KeptCounter:
    """One kind of kept counter: only what differs from the others.

    - `contribution(run)`: what `run`, as it stands in memory, adds to its row;
    - `key(run)`: the row it counts on (None: the run counts on no row of this counter);
    - `apply(deltas)`: add {key: {name: difference}} to the rows, inside the writing transaction;
    - `count_launched(runs)` / `count_inserted(queryset)`: count newly inserted runs (instances,
      or a bulk insert's rows read back);
    - `recount()`: replace every row with what the runs give (under `rebuild_lock(tables)`);
      returns how many rows it made;
    - `tables`: the models `recount` replaces, locked by the rebuild in the order writers take
      them.
    """

    name: str
    contribution: Callable[[Run], Contribution]
    key: Callable[[Run], Hashable | None]
    apply: Callable[[Deltas], None]
    count_launched: Callable[[Iterable[Run]], None]
    count_inserted: Callable[[QuerySet], None]
    recount: Callable[[], int]
    tables: tuple[type[Model], ...]

    def delta_add(self, deltas: Deltas, run: Run, before: Contribution) -> None:
        """Accumulate into `deltas` how `run` moved since `before` (its contribution when
        read)."""
        key = self.key(run)
        if key is None:
            return
        totals = deltas.setdefault(key, defaultdict(int))
        for name, value in self.contribution(run).minus(before).items():
            totals[name] += value


def increments(delta: dict[Any, float]) -> dict[str, F]:
    """A row's named differences as F() increments (two workers counting at once never lose an
    update: no read-modify-write); zero differences (and bucket moves, by number) left out."""
    return {
        name: F(name) + value for name, value in delta.items() if isinstance(name, str) and value
    }


def row_update(
    model: type[Model], lookup: dict, changes: dict, defaults: dict | None = None
) -> None:
    """Apply `changes` (F() expressions) to the row `lookup` names, making the row first if
    there is none yet (get_or_create settles two first launches racing)."""
    rows = model.objects.filter(**lookup)
    if not rows.update(**changes):
        model.objects.get_or_create(**lookup, defaults=defaults or {})
        rows.update(**changes)


def launched_by_key(runs: Iterable[Run], key: Callable[[Run], Hashable | None]) -> dict:
    """Newly inserted runs grouped by the row each counts on (runs on no row left out)."""
    launched: dict[Hashable, list[Run]] = defaultdict(list)
    for run in runs:
        row = key(run)
        if row is not None:
            launched[row].append(run)
    return launched


def carried(runs: Iterable[Run], contribution: Callable[[Run], Contribution]) -> dict:
    """What newly inserted runs already carry, summed (a run is inserted pending, so usually
    nothing): each one's contribution against an empty one."""
    totals: dict[Any, float] = defaultdict(int)
    for run in runs:
        counted = contribution(run)
        for name, value in counted.minus(type(counted)()).items():
            totals[name] += value
    return totals


@contextmanager
def rebuild_lock(tables: Iterable[type[Model]]):
    """The transaction a recount runs in, exact while runs keep moving: on PostgreSQL the kept
    tables are locked (EXCLUSIVE: reads go on, increments wait; in the order every writer takes
    them) before the runs are read, so a change not yet committed when they are read adds its
    increment after this commits, onto the recount; on SQLite the transaction takes the write
    lock as it begins (`transaction_mode` IMMEDIATE), so no other write interleaves."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            names = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in tables)
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {names} IN EXCLUSIVE MODE")  # noqa: S608
        yield
