"""Per-version counters of the prompts page (`PromptVersionRollup`), kept exact as runs move:
one of the kept counters `services/rollups` moves at every write that moves a run
(`PROMPT_VERSION_COUNTERS`, with the machinery they share in `services/kept_counters`). What is
this counter's own: its fields (`Contribution`), its row (the run's version), the dates a launch
widens, and the duration buckets.

A run counts once, as its latest attempt (earlier attempts live on in `RunAttempt` and are not
counted) — the same numbers a GROUP BY over the runs gives, which is what the recount computes
(`rollups.rollups_rebuild`; `prompt_rollups_rebuild` alone for the data migrations).

Beside the counters, each version's timed runs are counted per duration bucket
(`PromptVersionDurationBucket`; log-spaced, `DURATION_EDGES_MS`), in the same places and
transactions: a run's `Contribution` names its bucket, so the difference before/after moves it
from one bucket to another. The prompts page finds each median's bucket from these counts and
reads the exact value by walking that one bucket's durations (`version_stats.version_medians`).
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Count, F, IntegerField, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Greatest, Least

from launcher.db_json import JsonNumber
from launcher.models import PromptVersionDurationBucket, PromptVersionRollup, Run, RunStatus
from launcher.services import kept_counters

OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)
MICRO = Decimal("1000000")


def _duration_edges() -> tuple[int, ...]:
    """Bucket edges in whole milliseconds: from 1 s, each 1 % above the last (integer
    arithmetic, so Python and SQL agree on every edge), up to the first edge past a day."""
    edges = [1000]
    while edges[-1] < 86_400_000:
        edges.append(edges[-1] + edges[-1] // 100)
    return tuple(edges)


# Bucket 0 holds durations under 1 s (negative ones too), bucket b (1 … 1148) holds
# [DURATION_EDGES_MS[b - 1], DURATION_EDGES_MS[b]), bucket 1149 a day and more. 1 % wide: the
# median's bucket holds under 1 % of a version's runs (seeded durations: ~0.8 %), which is
# all the probe walks; the few hundred buckets a version uses are summed in the database,
# which sends one row per version (`version_stats.version_medians`). Changing the edges
# invalidates the kept counts: a migration must rebuild them (`prompt_rollups_rebuild`).
DURATION_EDGES_MS = _duration_edges()


def duration_bucket(duration_ms: int | None) -> int | None:
    """The bucket a stored `Run.duration_ms` falls in; None for an untimed run."""
    return None if duration_ms is None else bisect_right(DURATION_EDGES_MS, duration_ms)


def duration_bucket_low(bucket: int) -> int | None:
    """The smallest duration in `bucket` (None for bucket 0, which has no lower bound)."""
    return DURATION_EDGES_MS[bucket - 1] if bucket else None


@functools.cache
def _bucket_case(column: str) -> str:
    def within(low: int, high: int) -> str:
        if low == high:
            return str(low)
        middle = (low + high + 1) // 2
        edge = DURATION_EDGES_MS[middle - 1]
        return (
            f"CASE WHEN {column} >= {edge} THEN {within(middle, high)}"
            f" ELSE {within(low, middle - 1)} END"
        )

    return within(0, len(DURATION_EDGES_MS))


def duration_bucket_sql(run_model=Run) -> RawSQL:
    """`duration_bucket` as an SQL expression over `run_model`'s `duration_ms` (for the
    rebuild's GROUP BY): a binary search written as nested CASEs, 11 comparisons a row, with
    the same integer edges, so SQL and Python put every duration in the same bucket. The
    edges are written into the SQL (our own integers, no parameters): built once, it costs
    the rebuild nothing to compile."""
    quote = connection.ops.quote_name
    column = f"{quote(run_model._meta.db_table)}.{quote('duration_ms')}"
    return RawSQL(_bucket_case(column), [], output_field=IntegerField())  # noqa: S611


@dataclass(frozen=True)
class Contribution(kept_counters.Contribution):
    """What one run adds to its version's counters (besides `runs` and the dates, which a
    launch sets once), and the duration bucket it is counted in (None: untimed)."""

    finished: int = 0
    succeeded: int = 0
    cost_micro_usd: int = 0
    cost_runs: int = 0
    cached_steps: int = 0
    agentic_steps: int = 0
    timed: int = 0
    duration_bucket: int | None = None

    NOT_COUNTED = ("duration_bucket",)  # a bucket number: moved by `minus`, not subtracted

    def minus(self, other: Contribution) -> dict[str | int, int]:
        """The counters' differences by name, and by bucket number the run's move between
        duration buckets (-1 out of the one it left, +1 into the one it entered)."""
        delta = super().minus(other)
        if self.duration_bucket != other.duration_bucket:
            if other.duration_bucket is not None:
                delta[other.duration_bucket] = -1
            if self.duration_bucket is not None:
                delta[self.duration_bucket] = 1
        return delta


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
        duration_bucket=duration_bucket(run.duration_ms),
    )


def _version_of(run: Run) -> int | None:
    return run.prompt_version_id


def _rollup_update(version_id: int, changes: dict) -> None:
    kept_counters.row_update(PromptVersionRollup, {"prompt_version_id": version_id}, changes)


def _buckets_add(moves: Iterable[tuple[int, int, int]]) -> None:
    """Add (version id, bucket, runs) to the duration buckets: one INSERT … ON CONFLICT DO
    UPDATE SET runs = runs + excluded.runs (SQLite and PostgreSQL alike) for all of them. An
    upsert, not get_or_create + F(): the row a run is the first to enter is made in the same
    statement that counts it, so two workers racing to make it never lose a count. Rows go in
    (version, bucket) order, so two transactions lock shared rows in the same order."""
    added: dict[tuple[int, int], int] = defaultdict(int)
    for version, bucket, runs in moves:
        added[version, bucket] += runs  # one row once a statement (PostgreSQL insists)
    rows = sorted((version, bucket, runs) for (version, bucket), runs in added.items() if runs)
    if not rows:
        return
    table = connection.ops.quote_name(PromptVersionDurationBucket._meta.db_table)
    for start in range(0, len(rows), 300):  # 900 parameters a statement at most
        part = rows[start : start + 300]
        values = ", ".join(["(%s, %s, %s)"] * len(part))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (prompt_version_id, bucket, runs) VALUES {values}"  # noqa: S608
                f" ON CONFLICT (prompt_version_id, bucket)"
                f" DO UPDATE SET runs = {table}.runs + excluded.runs",
                [value for row in part for value in row],
            )


def _bucket_moves(version_id: int, delta: dict[str | int, int]) -> list[tuple[int, int, int]]:
    """A delta's bucket moves (by number, beside its counters by name) as (version, bucket,
    runs)."""
    return [
        (version_id, bucket, value) for bucket, value in delta.items() if isinstance(bucket, int)
    ]


def prompt_rollups_apply(deltas: dict[int, dict[str | int, int]]) -> None:
    """Add each version's differences ({version id: {counter name or bucket number: delta}});
    call inside the transaction that wrote the runs. Versions whose differences are all zero
    cost no query; all the bucket moves together cost one. Versions go in id order (one lock
    order for concurrent writers)."""
    moves: list[tuple[int, int, int]] = []
    for version_id in sorted(deltas):
        changes = kept_counters.increments(deltas[version_id])
        if changes:
            _rollup_update(version_id, changes)
        moves.extend(_bucket_moves(version_id, deltas[version_id]))
    _buckets_add(moves)


def _dates_widened(first, last) -> dict:
    """A launch's first and last use, widening the version's (F(): no read of the row)."""
    return {
        "first_used": Least(Coalesce(F("first_used"), Value(first)), Value(first)),
        "last_used": Greatest(Coalesce(F("last_used"), Value(last)), Value(last)),
    }


def prompt_rollups_count_launched(runs: Iterable[Run]) -> None:
    """Count newly inserted runs (launches): `runs`, first and last use, and whatever they
    already carry (a run is inserted pending, so usually nothing more). Call in the inserting
    transaction."""
    moves: list[tuple[int, int, int]] = []
    for version_id, version_runs in sorted(
        kept_counters.launched_by_key(runs, _version_of).items()
    ):
        first = min(run.created_at for run in version_runs)
        last = max(run.created_at for run in version_runs)
        added = kept_counters.carried(version_runs, contribution)
        changes = {"runs": F("runs") + len(version_runs), **_dates_widened(first, last)}
        _rollup_update(version_id, {**changes, **kept_counters.increments(added)})
        moves.extend(_bucket_moves(version_id, added))
    _buckets_add(moves)


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
        _rollup_update(
            row["prompt_version_id"],
            {"runs": F("runs") + row["runs"], **_dates_widened(row["first"], row["last"])},
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


def _buckets_from_runs(run_model, bucket_model) -> list:
    """Every version's duration buckets recounted from its runs: one GROUP BY over the timed
    runs by version and bucket (the bucket computed in SQL by `duration_bucket_sql`)."""
    rows = (
        run_model.objects.filter(prompt_version__isnull=False, duration_ms__isnull=False)
        .annotate(bucket=duration_bucket_sql(run_model))
        .values("prompt_version_id", "bucket")
        .annotate(runs=Count("pk"))
        .order_by()
    )
    return [
        bucket_model(
            prompt_version_id=row["prompt_version_id"], bucket=row["bucket"], runs=row["runs"]
        )
        for row in rows
    ]


def _recount(
    run_model=Run, rollup_model=PromptVersionRollup, bucket_model=PromptVersionDurationBucket
) -> int:
    rollups = _counted_from_runs(run_model, rollup_model)
    rollup_model.objects.all().delete()
    rollup_model.objects.bulk_create(rollups.values(), batch_size=500)
    if bucket_model is not None:
        buckets = _buckets_from_runs(run_model, bucket_model)
        bucket_model.objects.all().delete()
        bucket_model.objects.bulk_create(buckets, batch_size=500)
    return len(rollups)


def prompt_rollups_rebuild(
    *,
    run_model=Run,
    rollup_model=PromptVersionRollup,
    bucket_model=PromptVersionDurationBucket,
) -> int:
    """Recompute every version's counters and duration buckets from the runs (replacing what
    was kept); return how many versions have runs. `rollups.rollups_rebuild` recounts these
    with every other kept counter; this one alone is for the data migrations, which pass their
    historical models (`bucket_model=None` recounts the counters only, for the migration that
    ran before the buckets' table existed). Exact while runs keep moving
    (`kept_counters.rebuild_lock`)."""
    kept = [rollup_model] if bucket_model is None else [rollup_model, bucket_model]
    with kept_counters.rebuild_lock(kept):
        return _recount(run_model, rollup_model, bucket_model)


PROMPT_VERSION_COUNTERS = kept_counters.KeptCounter(
    name="prompt versions",
    contribution=contribution,
    key=_version_of,
    apply=prompt_rollups_apply,
    count_launched=prompt_rollups_count_launched,
    count_inserted=prompt_rollups_count_inserted,
    recount=_recount,
    tables=(PromptVersionRollup, PromptVersionDurationBucket),
)
