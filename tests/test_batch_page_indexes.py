"""The batch page's reads that must not walk the whole batch, checked with EXPLAIN on both
databases: the poll's unfinished runs (a seek on batch and status) and the failure clusters'
check for failed runs without a key (run_batch_failed_key). Figures: docs/benchmarks.md,
"batchpage"."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from launcher.models import Run, RunStatus
from launcher.selectors import batch_unfinished_sent_runs
from launcher.services.batches.clusters import _fill_missing_keys
from tests.views.test_batch_queries import matrix_batch

pytestmark = pytest.mark.django_db


def plan_of(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            return " ".join(str(row[-1]) for row in cursor.fetchall())
        # A test table is tiny, where a scan is cheapest; what must hold is that the index
        # serves the read (as at scale).
        for setting in ("enable_seqscan", "enable_bitmapscan"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute(f"EXPLAIN {sql}")
        return " ".join(row[0] for row in cursor.fetchall())


def only_query(call) -> str:
    with CaptureQueriesContext(connection) as queries:
        call()
    assert len(queries.captured_queries) == 1
    return queries.captured_queries[0]["sql"]


def test_the_poll_reads_the_unfinished_runs_by_the_status_index(catalog, operator):
    batch = matrix_batch(catalog, operator, 12)
    unfinished = Run.objects.filter(batch=batch, cyberdesk_id__isnull=False).exclude(
        status__in=[RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.CANCELLED]
    )

    sql = only_query(lambda: batch_unfinished_sent_runs(batch))

    assert {run.pk for run in batch_unfinished_sent_runs(batch)} == {r.pk for r in unfinished}
    plan = plan_of(sql)
    # A seek on (batch, status) — run_batch_status, or run_batch_failed_key which starts with
    # the same two columns, whichever the planner picks — never a walk of the whole batch.
    assert "run_batch_created" not in plan
    assert re.search(r"\(batch_id=\? AND status=\?\)|Index Cond: .*status", plan), plan


def test_the_clusters_check_for_missing_keys_seeks_the_failed_runs(catalog, operator):
    batch = matrix_batch(catalog, operator, 12)

    # Every failed run already has its key (save() derives it): the check finds none.
    sql = only_query(lambda: _fill_missing_keys(batch))

    assert "run_batch_failed_key" in plan_of(sql)
