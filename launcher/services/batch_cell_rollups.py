"""A batch's kept numbers: `Batch.run_count` (the batches list) and one `BatchCellRollup` per
cell of its grid (the batch page), kept exact as runs move: one of the kept counters
`services/rollups` moves at every write that moves a run (`BATCH_CELL_COUNTERS`, with the
machinery they share in `services/kept_counters`). What is this counter's own: its fields
(`CellContribution`), its row (the run's cell; a run outside any batch counts on none), the
batch's `run_count` a launch moves, and a plan's cells made in one INSERT (a new batch has no
rows yet), its `run_count` stored by the plan on the batch it creates.

The other writes to batch runs move nothing counted here: "Cancel the rest" and a refused send
turn a pending run (no outcome, duration, checks, steps or cost) into a cancelled or rejected
one (still none). A batch's runs never change in number after planning (nothing adds a run to
an existing batch, nothing deletes one but the batch), so `run_count` is set once.

The recount (`rollups.rollups_rebuild`; `batch_cell_rollups_rebuild` alone for the data
migration) recomputes all of it from the runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from launcher.batch_grid import cell_key
from launcher.models import Batch, BatchCellRollup, Run, RunStatus, run_cell_numbers
from launcher.models import run_duration_ms as _duration_ms
from launcher.services import kept_counters
from launcher.services.prompt_rollups import MICRO, OUTCOMES

CellId = tuple[int, object, int | None]  # (batch id, model option id, prompt version id)


@dataclass(frozen=True)
class CellContribution(kept_counters.Contribution):
    """What one run adds to its cell's counters (besides `runs`, which a launch sets once)."""

    outcomes: int = 0
    succeeded: int = 0
    checks_passed: int = 0
    checks_settled: int = 0
    cost_runs: int = 0
    cost_micro_usd: int = 0
    agentic_steps: float = 0
    agentic_runs: int = 0
    cached_steps: float = 0
    cached_runs: int = 0
    timed: int = 0


def cell_contribution(run: Run) -> CellContribution:
    """What `run`, as it stands in memory, adds to its cell's counters: the numbers the grid
    aggregated from the runs (the checks and steps derived as `Run.derived_refresh` stores
    them, whether or not it has run on this instance yet)."""
    numbers = run_cell_numbers(
        post_run_checks=run.post_run_checks, usage_metadata=run.usage_metadata
    )
    outcome = run.status in OUTCOMES
    duration = _duration_ms(started_at=run.started_at, ended_at=run.ended_at)
    agentic, cached = numbers["agentic_steps"], numbers["cached_steps"]
    return CellContribution(
        outcomes=int(outcome),
        succeeded=int(run.status == RunStatus.SUCCESS),
        checks_passed=numbers["checks_passed"],
        checks_settled=numbers["checks_passed"] + numbers["checks_failed"],
        cost_runs=int(run.cost_usd is not None),
        cost_micro_usd=0 if run.cost_usd is None else int(Decimal(run.cost_usd) * MICRO),
        agentic_steps=agentic or 0,
        agentic_runs=int(agentic is not None),
        cached_steps=cached or 0,
        cached_runs=int(cached is not None),
        timed=int(outcome and duration is not None),
    )


def _cell_of(run: Run) -> CellId | None:
    """The cell a run counts on; a run outside any batch counts on none."""
    if run.batch_id is None:
        return None
    return (run.batch_id, run.model_option_id, run.prompt_version_id)


def _cell_update(cell: CellId, changes: dict) -> None:
    batch_id, model_id, version_id = cell
    kept_counters.row_update(
        BatchCellRollup,
        {"batch_id": batch_id, "cell": cell_key(model_id, version_id)},
        changes,
        defaults={"model_option_id": model_id, "prompt_version_id": version_id},
    )


def batch_cell_rollups_apply(deltas: dict[CellId, dict[str, float]]) -> None:
    """Add each cell's counter differences ({cell: {counter: delta}}); call inside the
    transaction that wrote the runs. Cells whose differences are all zero cost no query."""
    for cell, delta in deltas.items():
        changes = kept_counters.increments(delta)
        if changes:
            _cell_update(cell, changes)


def batch_cell_rollups_count_launched(runs: Iterable[Run]) -> None:
    """Count newly inserted runs (single launches into a batch) on their cells and their
    batches' `run_count`, with whatever they already carry. Call in the inserting
    transaction."""
    per_batch: Counter = Counter()
    for cell, cell_runs in kept_counters.launched_by_key(runs, _cell_of).items():
        added = kept_counters.carried(cell_runs, cell_contribution)
        _cell_update(cell, {"runs": F("runs") + len(cell_runs), **kept_counters.increments(added)})
        per_batch[cell[0]] += len(cell_runs)
    for batch_id, added in per_batch.items():
        Batch.objects.filter(pk=batch_id).update(run_count=F("run_count") + added)


def batch_cell_rollups_count_inserted(inserted: QuerySet) -> None:
    """The cells of batches just planned (`inserted`: their runs, all pending, so only `runs`
    counts): one GROUP BY over them, one INSERT. Its `run_count` the plan stores itself."""
    rows = (
        inserted.filter(batch__isnull=False)
        .values("batch_id", "model_option_id", "prompt_version_id")
        .annotate(runs=Count("pk"))
        .order_by()
    )
    BatchCellRollup.objects.bulk_create(
        _cell_row(BatchCellRollup, row, runs=row["runs"]) for row in rows
    )


def _cell_row(rollup_model, row: dict, **numbers):
    """A cell's row from a GROUP BY (batch_id, model_option_id, prompt_version_id) row."""
    return rollup_model(
        batch_id=row["batch_id"],
        cell=cell_key(row["model_option_id"], row["prompt_version_id"]),
        model_option_id=row["model_option_id"],
        prompt_version_id=row["prompt_version_id"],
        **numbers,
    )


def batch_run_counts_rebuild(*, run_model=Run, batch_model=Batch) -> None:
    """Every batch's `run_count` recounted from its runs, in one UPDATE (a correlated COUNT
    per batch, each over its own index range)."""
    counted = (
        run_model.objects.filter(batch=OuterRef("pk"))
        .order_by()
        .values("batch")
        .annotate(n=Count("pk"))
        .values("n")
    )
    batch_model.objects.update(run_count=Coalesce(Subquery(counted), Value(0)))


def _counted_from_runs(run_model, rollup_model) -> list:
    """Every cell of every batch recomputed from its runs: one GROUP BY over the batch runs
    (their stored cell numbers, as the grid read them)."""
    outcome = Q(status__in=OUTCOMES)
    rows = (
        run_model.objects.filter(batch__isnull=False)
        .values("batch_id", "model_option_id", "prompt_version_id")
        .annotate(
            runs=Count("pk"),
            outcomes=Count("pk", filter=outcome),
            succeeded=Count("pk", filter=Q(status=RunStatus.SUCCESS)),
            passed=Sum("checks_passed"),
            failed=Sum("checks_failed"),
            cost_runs=Count("cost_usd"),
            cost_sum=Sum("cost_usd"),
            agentic=Sum("agentic_steps"),
            agentic_runs=Count("agentic_steps"),
            cached=Sum("cached_steps"),
            cached_runs=Count("cached_steps"),
            timed=Count("duration_ms", filter=outcome),
        )
        .order_by()
    )
    return [
        _cell_row(
            rollup_model,
            row,
            runs=row["runs"],
            outcomes=row["outcomes"],
            succeeded=row["succeeded"],
            checks_passed=row["passed"] or 0,
            checks_settled=(row["passed"] or 0) + (row["failed"] or 0),
            cost_runs=row["cost_runs"],
            # Rounded to the micro-dollar: SQLite sums decimals as floats.
            cost_micro_usd=round(Decimal(str(row["cost_sum"] or 0)) * MICRO),
            agentic_steps=row["agentic"] or 0,
            agentic_runs=row["agentic_runs"],
            cached_steps=row["cached"] or 0,
            cached_runs=row["cached_runs"],
            timed=row["timed"],
        )
        for row in rows
    ]


def _recount(run_model=Run, rollup_model=BatchCellRollup, batch_model=Batch) -> int:
    cells = _counted_from_runs(run_model, rollup_model)
    rollup_model.objects.all().delete()
    rollup_model.objects.bulk_create(cells, batch_size=500)
    batch_run_counts_rebuild(run_model=run_model, batch_model=batch_model)
    return len(cells)


def batch_cell_rollups_rebuild(
    *, run_model=Run, rollup_model=BatchCellRollup, batch_model=Batch
) -> int:
    """Recompute every batch's cells and `run_count` from the runs (replacing what was kept);
    return how many cells there are. `rollups.rollups_rebuild` recounts these with every other
    kept counter; this one alone is for the data migration, which passes its historical
    models. Exact while runs keep moving (`kept_counters.rebuild_lock`: the cells' table is
    locked; `run_count` moves only at a launch, whose insert the recount's read waits on)."""
    with kept_counters.rebuild_lock([rollup_model]):
        return _recount(run_model, rollup_model, batch_model)


BATCH_CELL_COUNTERS = kept_counters.KeptCounter(
    name="batch cells",
    contribution=cell_contribution,
    key=_cell_of,
    apply=batch_cell_rollups_apply,
    count_launched=batch_cell_rollups_count_launched,
    count_inserted=batch_cell_rollups_count_inserted,
    recount=_recount,
    tables=(BatchCellRollup,),
)
