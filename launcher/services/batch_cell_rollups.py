"""A batch's kept numbers: `Batch.run_count`, read by the batches list instead of counting the
batch's runs.

A batch's runs are inserted by its plan (`services/batches/plan.py`, which stores the count in
the same transaction) or one at a time by `Run.save()`, which calls
`batch_cell_rollups_count_launched` in the inserting transaction. Nothing else adds runs to a
batch (a retry or a cancel changes a run in place), so the count never moves after that.
`batch_cell_rollups_rebuild` recounts it from the runs (the data migration, `seed_history`
after its bulk insert, `manage.py prompt_rollups_rebuild`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from launcher.models import Batch, Run


def batch_cell_rollups_count_launched(runs: Iterable[Run]) -> None:
    """Count newly inserted runs (single launches into a batch) on their batches; call in the
    inserting transaction."""
    per_batch = Counter(run.batch_id for run in runs if run.batch_id is not None)
    for batch_id, added in per_batch.items():
        Batch.objects.filter(pk=batch_id).update(run_count=F("run_count") + added)


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
