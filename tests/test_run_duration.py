"""`Run.duration_ms`: the stored duration behind the prompts page's medians. Kept on every
path that records a run's end (save(), the batch sender's bulk write, history seeding, the
migration's backfill), and read through its index without a sort (EXPLAIN on both databases)."""

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from launcher.models import Run, RunStatus
from launcher.services.history import history_seed
from launcher.services.prompt_rollups import prompt_rollups_rebuild
from launcher.services.prompts import prompt_version_create
from launcher.version_stats import version_medians
from tests.launch_api import make_run

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_save_keeps_it_also_when_only_the_end_is_written(catalog):
    run = make_run(catalog.workflow, status=RunStatus.RUNNING)
    run.started_at = START
    run.save(update_fields=["started_at"])
    assert Run.objects.get(pk=run.pk).duration_ms is None  # no end yet

    run.ended_at = START + timedelta(seconds=83, microseconds=456_700)
    run.save(update_fields=["ended_at"])
    assert Run.objects.get(pk=run.pk).duration_ms == 83_457  # whole milliseconds, rounded


def test_the_bulk_write_of_the_batch_sender_keeps_it(catalog):
    from launcher.cyberdesk import types
    from launcher.services.run_sync import runs_apply_upstream_many
    from tests.fake_cyberdesk import upstream_run

    finished, running = (make_run(catalog.workflow, status=RunStatus.SCHEDULING) for _ in range(2))
    ended = START + timedelta(seconds=42)
    news = [
        (
            finished,
            upstream_run(
                finished.cyberdesk_id,
                status="success",
                started_at=START.isoformat(),
                ended_at=ended.isoformat(),
            ),
        ),
        (running, upstream_run(running.cyberdesk_id, status="running")),
    ]

    runs_apply_upstream_many([(run, types.Run.from_api(answer)) for run, answer in news])

    durations = dict(Run.objects.values_list("pk", "duration_ms"))
    assert durations == {finished.pk: 42_000, running.pk: None}


def test_seeded_history_carries_it(catalog):
    history_seed(runs=80, big_batch_runs=20)
    timed = Run.objects.filter(ended_at__isnull=False)
    assert timed.exists()
    for started, ended, stored in timed.values_list("started_at", "ended_at", "duration_ms"):
        assert stored == round((ended - started).total_seconds() * 1000)
    assert not Run.objects.filter(ended_at__isnull=True, duration_ms__isnull=False).exists()


def test_the_migration_backfills_it_in_one_update(catalog):
    migration = importlib.import_module("launcher.migrations.0011_flat_stats_duration")
    run = make_run(catalog.workflow, status=RunStatus.SUCCESS)
    Run.objects.filter(pk=run.pk).update(
        started_at=START, ended_at=START + timedelta(minutes=2, milliseconds=5), duration_ms=None
    )
    untimed = make_run(catalog.workflow, status=RunStatus.CANCELLED)
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL[connection.vendor])
    assert Run.objects.get(pk=run.pk).duration_ms == 120_005
    assert Run.objects.get(pk=untimed.pk).duration_ms is None


def test_the_medians_read_the_duration_index_without_sorting(catalog, django_assert_num_queries):
    workflow = catalog.workflow
    versions = [prompt_version_create(workflow=workflow, text=f"text {n}") for n in range(3)]
    for n in range(30):
        run = make_run(workflow, status=RunStatus.SUCCESS)
        Run.objects.filter(pk=run.pk).update(prompt_version=versions[n % 3], duration_ms=n * 700)
    prompt_rollups_rebuild()  # the queryset update skips the hooks that keep the buckets
    with django_assert_num_queries(2) as queries:  # the buckets, then the probes
        medians = version_medians(workflow)
    # Version k holds (3j + k) × 700 ms for j = 0…9: its middle two are j = 4 and 5.
    assert medians == {
        version.pk: timedelta(milliseconds=(13.5 + k) * 700) for k, version in enumerate(versions)
    }
    sql = queries.captured_queries[1]["sql"]
    assert sql.count("UNION ALL") == 2  # one probe per version, in one query
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "run_version_duration" in plan and "TEMP B-TREE" not in plan
        else:
            # A test table is tiny, where a scan and a sort are cheapest; what must hold is
            # that the index serves the medians without one (as at scale: docs/benchmarks.md).
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                cursor.execute(f"SET LOCAL {setting} = off")
            cursor.execute(f"EXPLAIN {sql}")
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "Index Only Scan using run_version_duration" in plan and "Sort" not in plan


def test_the_batch_grid_percentiles_agree_with_percentile_cont_and_skip_the_sort(catalog):
    import random

    from launcher.batch_grid import _add_durations, _cells
    from launcher.models import Batch
    from launcher.services.stats import percentile
    from tests.batch_data import add_runs

    batch = Batch.objects.create(workflow=catalog.workflow, name="Durations", is_matrix=True)
    rng = random.Random(7)
    expected = {}
    for number, (model, version, size) in enumerate(
        [(None, catalog.v1, 7), (catalog.model, catalog.v1, 12), (catalog.model, catalog.v2, 1)]
    ):
        runs = add_runs(
            batch, model=model, version=version, successes=size, first_row=100 * number + 1
        )
        values = []
        for run in runs:
            ms = rng.randrange(1_000, 200_000)
            Run.objects.filter(pk=run.pk).update(duration_ms=ms)
            values.append(ms)
        values.sort()
        expected[(model.pk if model else None, version.pk)] = (
            timedelta(milliseconds=percentile(values, 0.5)),
            timedelta(milliseconds=percentile(values, 0.9)),
        )
    cells = _cells(batch)
    with CaptureQueriesContext(connection) as queries:
        _add_durations(batch, cells)
    got = {(c.model_id, c.version_id): (c.median_duration, c.p90_duration) for c in cells}
    assert got == expected
    assert len(queries.captured_queries) == 1
    sql = queries.captured_queries[0]["sql"]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "COVERING INDEX run_batch_cell_duration" in plan and "TEMP B-TREE" not in plan
        else:
            # On a few rows, with statistics an earlier test left, the planner may prefer
            # another index plus an incremental sort: penalize that too (enable_sort does not).
            settings = (
                "enable_seqscan",
                "enable_bitmapscan",
                "enable_sort",
                "enable_incremental_sort",
            )
            for setting in settings:
                cursor.execute(f"SET LOCAL {setting} = off")
            cursor.execute(f"EXPLAIN {sql}")
            plan = " ".join(row[0] for row in cursor.fetchall())
            assert "Index Only Scan using run_batch_cell_duration" in plan
            assert "Sort" not in plan
