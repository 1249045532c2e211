"""Per-version counters of the prompts page (`PromptVersionRollup`), kept exact as runs move.

Three writes move a run's numbers, and each calls in here inside its own transaction, so the
counters and the runs never disagree (F() increments: two workers counting at once never
lose an update, there is no read-modify-write):

- a launch: `Run.save()` on insert calls `prompt_rollups_count_launched`; a batch plan's bulk
  insert calls `prompt_rollups_count_inserted`;
- an upstream answer (`run_sync`'s locked apply, one run or a chunk's many): the run's
  `contribution` before and after, the difference applied with `prompt_rollups_apply`;
- a cost arriving later (`run_sync.run_cost_fetch`): the same difference.

A run counts once, as its latest attempt. A retry (`run_apply_upstream(restart=True)`) clears
the finished attempt's status, results and cost, so the difference takes its outcome back out;
the new attempt adds its own when it ends. Earlier attempts live on in `RunAttempt` and are not
counted — the same numbers a GROUP BY over the runs gives, which is what
`prompt_rollups_rebuild` computes (a data migration, `seed_history` after its bulk insert, and
`manage.py prompt_rollups_rebuild` for anyone who doubts the counters).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest, Least

from launcher.db_json import JsonNumber
from launcher.models import PromptVersionRollup, Run, RunStatus

OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)
MICRO = Decimal("1000000")


@dataclass(frozen=True)
class Contribution:
    """What one run adds to its version's counters (besides `runs` and the dates, which a
    launch sets once)."""

    finished: int = 0
    succeeded: int = 0
    cost_micro_usd: int = 0
    cost_runs: int = 0
    cached_steps: int = 0
    agentic_steps: int = 0
    timed: int = 0

    def minus(self, other: Contribution) -> dict[str, int]:
        return {f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}


def _step_count(usage, key: str) -> int:
    """A step counter of `usage_metadata`, read as `JsonNumber` reads it in SQL (numbers only;
    anything else counts 0)."""
    value = usage.get(key) if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def contribution(run: Run) -> Contribution:
    """What `run`, as it stands in memory, adds to its version's counters."""
    return Contribution(
        finished=int(run.status in OUTCOMES),
        succeeded=int(run.status == RunStatus.SUCCESS),
        cost_micro_usd=0 if run.cost_usd is None else int(Decimal(run.cost_usd) * MICRO),
        cost_runs=int(run.cost_usd is not None),
        cached_steps=_step_count(run.usage_metadata, "total_cached_steps"),
        agentic_steps=_step_count(run.usage_metadata, "total_agentic_steps"),
        timed=int(run.duration_ms is not None),
    )


def _rollup_update(version_id: int, changes: dict) -> None:
    """Apply `changes` (F() expressions) to the version's row, making the row first if this
    version has none yet (get_or_create settles two first launches racing)."""
    if not PromptVersionRollup.objects.filter(prompt_version_id=version_id).update(**changes):
        PromptVersionRollup.objects.get_or_create(prompt_version_id=version_id)
        PromptVersionRollup.objects.filter(prompt_version_id=version_id).update(**changes)


def prompt_rollups_apply(deltas: dict[int, dict[str, int]]) -> None:
    """Add each version's counter differences ({version id: {counter: delta}}); call inside the
    transaction that wrote the runs. Versions whose differences are all zero cost no query."""
    for version_id, delta in deltas.items():
        changes = {name: F(name) + value for name, value in delta.items() if value}
        if version_id is not None and changes:
            _rollup_update(version_id, changes)


def prompt_rollups_delta_add(
    deltas: dict[int, dict[str, int]], run: Run, before: Contribution
) -> None:
    """Accumulate into `deltas` how `run` moved since `before` (its contribution when read)."""
    if run.prompt_version_id is None:
        return
    totals = deltas.setdefault(run.prompt_version_id, defaultdict(int))
    for name, value in contribution(run).minus(before).items():
        totals[name] += value


def prompt_rollups_record(run: Run, before: Contribution) -> None:
    """Add how one run moved since `before` to its version's counters; call inside the
    transaction that wrote the run."""
    deltas: dict[int, dict[str, int]] = {}
    prompt_rollups_delta_add(deltas, run, before)
    prompt_rollups_apply(deltas)


def prompt_rollups_count_launched(runs: Iterable[Run]) -> None:
    """Count newly inserted runs (launches): `runs`, first and last use, and whatever they
    already carry (a run is inserted pending, so usually nothing more). Call in the inserting
    transaction."""
    launched: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        if run.prompt_version_id is not None:
            launched[run.prompt_version_id].append(run)
    for version_id, version_runs in launched.items():
        first = min(run.created_at for run in version_runs)
        last = max(run.created_at for run in version_runs)
        changes = {
            "runs": F("runs") + len(version_runs),
            "first_used": Least(Coalesce(F("first_used"), Value(first)), Value(first)),
            "last_used": Greatest(Coalesce(F("last_used"), Value(last)), Value(last)),
        }
        carried: dict[str, int] = defaultdict(int)
        for run in version_runs:
            for name, value in contribution(run).minus(Contribution()).items():
                carried[name] += value
        changes.update({name: F(name) + value for name, value in carried.items() if value})
        _rollup_update(version_id, changes)


def prompt_rollups_count_inserted(inserted: QuerySet) -> None:
    """`prompt_rollups_count_launched` for runs inserted without model instances (a batch
    plan's bulk insert: `inserted` is just those runs, pending): one GROUP BY over them, then
    one UPDATE per version."""
    rows = (
        inserted.filter(prompt_version__isnull=False)
        .values("prompt_version_id")
        .annotate(runs=Count("pk"), first=Min("created_at"), last=Max("created_at"))
        .order_by()
    )
    for row in rows:
        first, last = row["first"], row["last"]
        _rollup_update(
            row["prompt_version_id"],
            {
                "runs": F("runs") + row["runs"],
                "first_used": Least(Coalesce(F("first_used"), Value(first)), Value(first)),
                "last_used": Greatest(Coalesce(F("last_used"), Value(last)), Value(last)),
            },
        )


def _counted_from_runs(run_model, rollup_model) -> dict:
    """Every version's counters recomputed from its runs: one GROUP BY over all runs."""
    rows = (
        run_model.objects.filter(prompt_version__isnull=False)
        .values("prompt_version_id")
        .annotate(
            runs=Count("pk"),
            finished=Count("pk", filter=Q(status__in=OUTCOMES)),
            succeeded=Count("pk", filter=Q(status=RunStatus.SUCCESS)),
            cost_sum=Sum("cost_usd"),
            cost_runs=Count("cost_usd"),
            cached=Sum(JsonNumber("usage_metadata", "total_cached_steps")),
            agentic=Sum(JsonNumber("usage_metadata", "total_agentic_steps")),
            timed=Count("duration_ms"),
            first_used=Min("created_at"),
            last_used=Max("created_at"),
        )
        .order_by()
    )
    return {
        row["prompt_version_id"]: rollup_model(
            prompt_version_id=row["prompt_version_id"],
            runs=row["runs"],
            finished=row["finished"],
            succeeded=row["succeeded"],
            # Rounded to the micro-dollar: SQLite sums decimals as floats.
            cost_micro_usd=round(Decimal(str(row["cost_sum"] or 0)) * MICRO),
            cost_runs=row["cost_runs"],
            cached_steps=int(row["cached"] or 0),
            agentic_steps=int(row["agentic"] or 0),
            timed=row["timed"],
            first_used=row["first_used"],
            last_used=row["last_used"],
        )
        for row in rows
    }


def prompt_rollups_rebuild(*, run_model=Run, rollup_model=PromptVersionRollup) -> int:
    """Recompute every version's counters from the runs (replacing what was kept); return how
    many versions have runs. Run it after writes that skip the hooks (bulk inserts such as
    `seed_history`), or to check the counters. (The data migration passes its historical
    models.)

    Exact while runs keep moving: on PostgreSQL the counters' table is locked (EXCLUSIVE: reads
    go on, increments wait) before the runs are read, so a change not yet committed when they
    are read adds its increment after this commits, onto the recount; on SQLite the
    transaction takes the write lock as it begins (`transaction_mode` IMMEDIATE), so no other
    write interleaves.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"LOCK TABLE {connection.ops.quote_name(rollup_model._meta.db_table)}"  # noqa: S608
                    " IN EXCLUSIVE MODE"
                )
        rollups = _counted_from_runs(run_model, rollup_model)
        rollup_model.objects.all().delete()
        rollup_model.objects.bulk_create(rollups.values(), batch_size=500)
    return len(rollups)
