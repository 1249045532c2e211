"""launcher.services.batches.clusters: failed runs grouped by cause (the same error with
different ids in one cluster; a failing check by its name), counted in SQL, and "Retry this
cluster" — the retry of only that cluster's runs, each at the attempt it failed in."""

import pytest
from django_tasks_db.models import DBTaskResult

from launcher import tasks
from launcher.batch_grid import cell_key
from launcher.models import Batch, Run, RunStatus
from launcher.services.batches import (
    CLUSTERS_SHOWN,
    batch_cluster_retry,
    batch_failure_cluster,
    batch_failure_clusters,
)
from tests.batch_data import add_runs

pytestmark = pytest.mark.django_db
NOT_FOUND = [
    "Customer 'c-101' not found (request 5f0c1a2b3c4d)",
    "Customer 'c-9' not found (request 77aa00bb11cc)",
]
CHECK = [{"name": "Has invoice", "status": "failed"}]


@pytest.fixture
def batch(catalog):
    batch = Batch.objects.create(workflow=catalog.workflow, name="Compare", is_matrix=True)
    add_runs(batch, version=catalog.v1, successes=4, failures=3, errors=NOT_FOUND)
    add_runs(batch, version=catalog.v2, failures=2, errors=NOT_FOUND, first_row=10)
    add_runs(batch, model=catalog.model, version=catalog.v1, failures=2, checks=CHECK, first_row=20)
    add_runs(
        batch,
        model=catalog.model,
        version=catalog.v2,
        failures=1,
        errors=["Login page did not load"],
        first_row=30,
    )
    return batch


def test_the_same_error_with_different_ids_is_one_cluster(catalog, batch):
    result = batch_failure_clusters(batch=batch)

    assert (result.failed, result.total, result.hidden) == (8, 3, 0)
    first, second, third = result.clusters
    assert (first.kind, first.text, first.count) == (
        "Error",
        "Customer <value> not found (request <id>)",
        5,
    )
    assert first.share == pytest.approx(5 / 8) and first.share_display == "62%"
    assert [(cell.label, cell.count) for cell in first.cells] == [
        ("Workflow default · v1", 3),
        ("Workflow default · v2", 2),
    ]
    assert first.cells[0].key == cell_key(None, catalog.v1.pk)
    assert (
        first.representative_run_id
        == Run.objects.filter(failure_key=first.key).order_by("pk")[0].pk
    )
    assert (second.kind, second.text, second.count) == ("Post-run check failed", "Has invoice", 2)
    assert [cell.label for cell in second.cells] == ["Claude Sonnet · v1"]
    assert (third.text, third.count) == ("Login page did not load", 1)


def test_only_the_largest_clusters_are_listed(catalog):
    batch = Batch.objects.create(workflow=catalog.workflow)
    words = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
        "mike",
        "november",
        "oscar",
        "papa",
        "quebec",
        "romeo",
        "sierra",
        "tango",
        "uniform",
        "victor",
    ]
    add_runs(batch, failures=len(words), errors=[f"Step {w} broke" for w in words])

    result = batch_failure_clusters(batch=batch)

    assert result.total == len(words) > CLUSTERS_SHOWN
    assert len(result.clusters) == CLUSTERS_SHOWN and result.hidden == len(words) - CLUSTERS_SHOWN


def test_a_batch_without_failures_has_no_clusters(catalog):
    batch = Batch.objects.create(workflow=catalog.workflow)
    add_runs(batch, successes=3)

    result = batch_failure_clusters(batch=batch)

    assert (result.failed, result.clusters) == (0, [])


def test_one_cluster_by_its_key(batch):
    key = "check:Has invoice"
    cluster = batch_failure_cluster(batch=batch, key=key)
    assert (cluster.count, cluster.retryable, cluster.share) == (2, 2, 2 / 8)
    assert batch_failure_cluster(batch=batch, key="error:nothing like it") is None


def retry_tasks() -> list[list]:
    path = tasks.batch_retry_task.module_path
    return [t.args_kwargs["args"] for t in DBTaskResult.objects.filter(task_path=path)]


def test_retry_this_cluster_asks_for_its_runs_only(
    operator, batch, django_capture_on_commit_callbacks
):
    key = batch_failure_clusters(batch=batch).clusters[0].key
    wanted = list(
        Run.objects.filter(batch=batch, failure_key=key)
        .order_by("batch_row", "pk")
        .values_list("pk", "attempt")
    )

    with django_capture_on_commit_callbacks(execute=True):
        asked = batch_cluster_retry(batch=batch, key=key, user=operator)

    assert asked.in_background == 5
    ((batch_id, targets, requested_at, user_id),) = retry_tasks()
    assert batch_id == batch.pk and user_id == operator.pk
    assert [tuple(target) for target in targets] == wanted
    batch.refresh_from_db()
    assert batch.retry_requested_at is not None


def test_retrying_a_cluster_no_longer_failed_asks_for_nothing(operator, batch):
    key = "check:Has invoice"
    Run.objects.filter(failure_key=key).update(status=RunStatus.RUNNING)

    asked = batch_cluster_retry(batch=batch, key=key, user=operator)

    assert asked.in_background == 0 and retry_tasks() == []


def test_runs_written_around_save_still_get_their_cluster(catalog):
    batch = Batch.objects.create(workflow=catalog.workflow)
    add_runs(batch, successes=3)
    # A bulk write (as a data fix or another tool might do it) skips Run.save().
    Run.objects.filter(batch=batch, batch_row=1).update(
        status=RunStatus.ERROR, errors=["Browser crashed at step 4"]
    )
    Run.objects.filter(batch=batch, batch_row=2).update(
        status=RunStatus.TASK_FAILED, errors=["Browser crashed at step 9"]
    )

    result = batch_failure_clusters(batch=batch)

    assert [(c.text, c.count) for c in result.clusters] == [("Browser crashed at step <n>", 2)]
    assert set(Run.objects.filter(batch=batch).values_list("failure_key", flat=True)) == {
        "",
        "error:Browser crashed at step <n>",
    }
