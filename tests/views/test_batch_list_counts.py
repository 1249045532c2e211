"""The batches list reads each batch's size from `Batch.run_count` (stored by the plan) and
counts only the small sets: the queued runs and the unfinished ones. Its query count stays the
same whatever the batches' sizes, and the lifecycle it shows is the one a full count gives."""

import pytest
from django.urls import reverse

from launcher.models import TERMINAL_STATUSES, Batch, Run, RunStatus, Submission
from launcher.selectors import batch_lifecycle, batches_for_list
from launcher.services.batch_cell_rollups import batch_run_counts_rebuild
from tests.launch_api import make_batch, make_run
from tests.services.test_batches import plan

pytestmark = pytest.mark.django_db


def _batch(catalog, name, *, state=Batch.State.SUBMITTED, **runs):
    return make_batch(catalog.workflow, name=name, state=state, **runs)


def test_the_plan_stores_how_many_runs_the_batch_has(catalog, operator):
    batch = plan(catalog, operator, rows=4, choices=("stored", "latest"))

    batch.refresh_from_db()
    assert batch.run_count == 8 == Run.objects.filter(batch=batch).count()


def test_a_run_inserted_into_a_batch_counts_on_it(catalog):
    batch = _batch(catalog, "One by one", queued=2, success=1)

    batch.refresh_from_db()
    assert batch.run_count == 3
    make_run(catalog.workflow, status=RunStatus.RUNNING)  # not in a batch: counts nowhere
    batch.refresh_from_db()
    assert batch.run_count == 3


def test_the_rebuild_recounts_every_batch(catalog):
    big = _batch(catalog, "Big", success=5)
    empty = Batch.objects.create(workflow=catalog.workflow, name="Empty")
    Batch.objects.update(run_count=99)

    batch_run_counts_rebuild()

    assert Batch.objects.get(pk=big.pk).run_count == 5
    assert Batch.objects.get(pk=empty.pk).run_count == 0


def _full_count_lifecycle(batch: Batch) -> str:
    """As the list counted before: every run, the queued ones, the terminal ones."""
    runs = Run.objects.filter(batch=batch)
    return batch_lifecycle(
        state=batch.state,
        total=runs.count(),
        queued=runs.filter(submission=Submission.QUEUED).count(),
        finished=runs.filter(status__in=TERMINAL_STATUSES).count(),
    )


def test_the_lifecycle_is_the_one_a_full_count_gives(catalog):
    batches = [
        _batch(catalog, "Planned", state=Batch.State.SUBMITTING, queued=3),
        _batch(catalog, "Sending", state=Batch.State.SUBMITTING, queued=2, running=1, success=1),
        _batch(catalog, "Running", running_checks=1, task_failed=2),
        _batch(catalog, "Finished", success=3, error=1, cancelled=1, rejected=1),
        _batch(catalog, "Cancelled", state=Batch.State.CANCELLED, scheduling=1, success=1),
        # Finished runs still marked queued (as the list has always counted them).
        _batch(catalog, "Odd", state=Batch.State.SUBMITTING, success=2, queued=1),
        Batch.objects.create(workflow=catalog.workflow, name="Empty"),
    ]

    shown = {batch.name: batch for batch in batches_for_list(limit=20)}

    for batch in batches:
        assert shown[batch.name].lifecycle == _full_count_lifecycle(batch), batch.name
        assert shown[batch.name].run_count == Run.objects.filter(batch=batch).count()
    assert [shown[name].lifecycle for name in ("Planned", "Sending", "Running", "Finished")] == [
        "planned",
        "sending",
        "running",
        "finished",
    ]


@pytest.mark.parametrize("size", [1, 60])
def test_the_list_costs_the_same_for_a_big_batch_and_a_small_one(
    catalog, operator_client, django_assert_num_queries, size
):
    _batch(catalog, "Small", success=1, running=1)
    big = _batch(catalog, "Big", success=size, task_failed=size, running=1)
    operator_client.get(reverse("batch_list"))  # warm the session

    # session, user, the permission (one query); the batches with workflow, creator and counts
    with django_assert_num_queries(4):
        response = operator_client.get(reverse("batch_list"))

    shown = {batch.name: batch for batch in response.context["batches"]}
    assert shown["Big"].run_count == 2 * size + 1 and shown["Big"].lifecycle == "running"
    assert shown["Small"].run_count == 2
    assert f'<td class="num">{2 * size + 1}</td>' in response.content.decode()
    Run.objects.filter(batch=big, status=RunStatus.RUNNING).update(status=RunStatus.SUCCESS)
    (finished,) = [b for b in batches_for_list(limit=20) if b.name == "Big"]
    assert finished.lifecycle == "finished"
