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

    plan = plan_of(sql)
    if connection.vendor == "sqlite":
        assert "run_batch_failed_key" in plan, plan
    else:
        # On a 12-run table PostgreSQL picks any index that leads with batch_id; what must
        # hold is that it reads an index, never the table (checked at scale: benchmarks.md).
        assert "Index" in plan and "Seq Scan" not in plan, plan


def test_the_grid_numbers_are_stored_by_save_and_by_the_bulk_write(catalog):
    from launcher.cyberdesk import types
    from launcher.services.run_sync import runs_apply_upstream_many
    from tests.fake_cyberdesk import upstream_run
    from tests.launch_api import make_run

    checks = [
        {"name": "Has invoice", "status": "success"},
        {"name": "Totals match", "status": "failed"},
        {"name": "Signed", "status": "success"},
        "not a check",
    ]
    saved = make_run(catalog.workflow, status=RunStatus.SUCCESS)
    saved.post_run_checks = checks
    saved.usage_metadata = {"total_agentic_steps": 12, "total_cached_steps": True}
    saved.save(update_fields=["post_run_checks", "usage_metadata"])
    bulk = make_run(catalog.workflow, status=RunStatus.SCHEDULING)
    answer = upstream_run(
        bulk.cyberdesk_id,
        status="success",
        post_run_checks=checks[:2],
        usage_metadata={"total_agentic_steps": 7.5, "total_cached_steps": 3},
    )

    runs_apply_upstream_many([(bulk, types.Run.from_api(answer))])

    numbers = {
        pk: rest
        for pk, *rest in Run.objects.values_list(
            "pk", "checks_passed", "checks_failed", "agentic_steps", "cached_steps"
        )
    }
    # A JSON true is not a step count (as the grid's JSON aggregate read it).
    assert numbers[saved.pk] == [2, 1, 12.0, None]
    assert numbers[bulk.pk] == [1, 1, 7.5, 3.0]


def test_the_migration_backfills_the_grid_numbers_as_save_derives_them(catalog):
    import importlib

    from django.apps import apps

    from launcher.models import run_cell_numbers
    from tests.launch_api import make_run

    migration = importlib.import_module("launcher.migrations.0014_batchpage_batch_pages")
    shapes = [
        ([{"status": "success"}, {"status": "failed"}, {"status": "success"}], None),
        ("not a list", {"total_agentic_steps": 4, "total_cached_steps": 1.5}),
        ([], {"total_agentic_steps": "n/a", "total_cached_steps": True}),
        ([None, {"name": "x"}], []),
    ]
    runs = []
    for checks, usage in shapes:
        run = make_run(catalog.workflow, status=RunStatus.SUCCESS)
        # As before the migration: the JSON written, the numbers not derived yet.
        Run.objects.filter(pk=run.pk).update(
            post_run_checks=checks,
            usage_metadata=usage,
            checks_passed=0,
            checks_failed=0,
            agentic_steps=None,
            cached_steps=None,
        )
        runs.append((run.pk, checks, usage))

    migration.backfill_cell_numbers(apps, None)

    for pk, checks, usage in runs:
        stored = Run.objects.filter(pk=pk).values(*Run._CELL_FIELDS).get()
        assert stored == run_cell_numbers(post_run_checks=checks, usage_metadata=usage)
