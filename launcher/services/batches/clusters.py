"""Why a batch's runs failed: its failed runs grouped by cause, and "Retry this cluster".

A cluster is the batch's failed (`task_failed` / `error`) runs that share a `Run.failure_key`:
the name of the post-run check that failed, else the first error message with ids, numbers and
quoted values stripped (`launcher.failures`). The key is stored with the run, so reading the
clusters is three GROUP BY queries whatever the batch's size: the totals, the largest
`CLUSTERS_SHOWN` clusters, and how those spread over the grid's cells.

"Retry this cluster" is "Retry failed runs" (`actions.batch_retry_failed`) limited to the
cluster's runs: same background task, same once-per-attempt guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Min

from launcher.batch_grid import cell_key, percent
from launcher.failures import failure_key, failure_key_display
from launcher.models import Batch, Run
from launcher.services.batches.actions import (
    FAILED_STATUSES,
    BatchActionRequested,
    batch_retry_failed,
)

CLUSTERS_SHOWN = 20


@dataclass
class ClusterCell:
    key: str  # the grid cell's key (`batch_grid.cell_key`)
    label: str  # "Claude Sonnet · v2"
    count: int


@dataclass
class FailureCluster:
    key: str
    kind: str  # "Error" or "Post-run check failed"
    text: str
    count: int
    share: float  # of the batch's failed runs
    representative_run_id: int  # the cluster's first run
    retryable: int = 0  # runs the API has (a retry needs the upstream run)
    cells: list[ClusterCell] = field(default_factory=list)

    @property
    def share_display(self) -> str:
        return percent(self.share)


@dataclass
class BatchClusters:
    clusters: list[FailureCluster] = field(default_factory=list)
    failed: int = 0  # the batch's failed runs
    total: int = 0  # how many clusters there are (only the largest CLUSTERS_SHOWN are listed)

    @property
    def hidden(self) -> int:
        return self.total - len(self.clusters)


def batch_failure_clusters(*, batch: Batch) -> BatchClusters:
    """The batch's failure clusters, largest first (ties: the earliest failure first)."""
    _fill_missing_keys(batch)
    failed = Run.objects.filter(batch=batch, status__in=FAILED_STATUSES).order_by()
    totals = failed.aggregate(runs=Count("id"), clusters=Count("failure_key", distinct=True))
    result = BatchClusters(failed=totals["runs"], total=totals["clusters"])
    if not result.failed:
        return result
    top = list(
        failed.values("failure_key")
        .annotate(count=Count("id"), first=Min("id"), retryable=Count("cyberdesk_id"))
        .order_by("-count", "first")[:CLUSTERS_SHOWN]
    )
    clusters = {}
    for row in top:
        kind, text = failure_key_display(row["failure_key"])
        clusters[row["failure_key"]] = FailureCluster(
            key=row["failure_key"],
            kind=kind,
            text=text,
            count=row["count"],
            share=row["count"] / result.failed,
            representative_run_id=row["first"],
            retryable=row["retryable"],
        )
    spread = (
        failed.filter(failure_key__in=list(clusters))
        .values(
            "failure_key",
            "model_option_id",
            "model_option__name",
            "prompt_version_id",
            "prompt_version__number",
        )
        .annotate(count=Count("id"))
        .order_by("failure_key", "-count", "model_option__name", "prompt_version__number")
    )
    for row in spread:
        number = row["prompt_version__number"]
        clusters[row["failure_key"]].cells.append(
            ClusterCell(
                key=cell_key(row["model_option_id"], row["prompt_version_id"]),
                label=f"{row['model_option__name'] or 'Workflow default'} · "
                + (f"v{number}" if number else "Stored prompt"),
                count=row["count"],
            )
        )
    result.clusters = list(clusters.values())
    return result


# Keys filled per read at most: a batch written around save() is healed over a few views.
FILL_LIMIT = 5000


def _fill_missing_keys(batch: Batch) -> None:
    """Give a key to the batch's failed runs that have none. `Run.save()` keeps the key, but a
    queryset `.update()` or `bulk_create()` of a failed run goes around it; a failed run always
    has a key (at least "error:(no error message)"), so an empty one means "not derived yet".
    One indexed query that finds nothing in the steady state."""
    missing = list(
        Run.objects.filter(batch=batch, failure_key="", status__in=FAILED_STATUSES)
        .only("id", "status", "errors", "post_run_checks")
        # No ordering: the default newest-first one walks the whole batch by run_batch_created
        # instead of seeking (batch, failed status, "") in run_batch_failed_key.
        .order_by()[:FILL_LIMIT]
    )
    for run in missing:
        run.failure_key = failure_key(
            status=run.status, errors=run.errors, post_run_checks=run.post_run_checks
        )
    if missing:
        Run.objects.bulk_update(missing, ["failure_key"], batch_size=500)


def batch_failure_cluster(*, batch: Batch, key: str) -> FailureCluster | None:
    """One cluster by its key (the confirmation page), or None when no failed run has it now."""
    if "\x00" in key:
        return None  # no stored key holds U+0000, and PostgreSQL refuses it in a query
    failed = Run.objects.filter(batch=batch, status__in=FAILED_STATUSES)
    row = (
        failed.filter(failure_key=key)
        .values("failure_key")
        .annotate(count=Count("id"), first=Min("id"), retryable=Count("cyberdesk_id"))
        .order_by("failure_key")
        .first()
    )
    if row is None:
        return None
    kind, text = failure_key_display(key)
    return FailureCluster(
        key=key,
        kind=kind,
        text=text,
        count=row["count"],
        share=row["count"] / failed.count(),
        representative_run_id=row["first"],
        retryable=row["retryable"],
    )


def batch_cluster_retry(*, batch: Batch, key: str, user) -> BatchActionRequested:
    """Retry the runs of one failure cluster, in the background (see `batch_retry_failed`)."""
    return batch_retry_failed(batch=batch, user=user, failure_key=key)
