"""A batch's progress from its kept numbers equals a count of every run, whatever the mix of
submissions and statuses (`selectors.batch_progress` derives the finished states instead of
counting them)."""

import random

import pytest

from launcher.models import Batch, Run, RunStatus, Submission
from launcher.selectors import batch_progress
from launcher.services.batch_cell_rollups import batch_cell_rollups_rebuild
from tests.launch_api import make_model


def progress_counted_run_by_run(batch: Batch) -> dict:
    """The definition: every run of the batch, read and counted in Python."""
    runs = list(Run.objects.filter(batch=batch).values_list("submission", "status"))

    def count(*, submission=None, statuses=()):
        return sum(
            1
            for sub, status in runs
            if (submission is None or sub == submission) and (not statuses or status in statuses)
        )

    pending_unknown = count(submission=Submission.UNKNOWN, statuses=(RunStatus.PENDING,))
    return {
        "total": len(runs),
        "queued": count(submission=Submission.QUEUED),
        "unknown": count(submission=Submission.UNKNOWN),
        "rejected": count(statuses=(RunStatus.REJECTED,)),
        "submitted": count(submission=Submission.ACCEPTED),
        "scheduling": count(statuses=(RunStatus.SCHEDULING,)),
        "running": count(statuses=(RunStatus.RUNNING, RunStatus.RUNNING_CHECKS)),
        "succeeded": count(statuses=(RunStatus.SUCCESS,)),
        "failed": count(statuses=(RunStatus.TASK_FAILED, RunStatus.ERROR)),
        "cancelled": count(statuses=(RunStatus.CANCELLED,)),
        "waiting": count(statuses=(RunStatus.PENDING,)) - pending_unknown,
        "pending_unknown": pending_unknown,
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_progress_equals_a_count_of_every_run(catalog, seed):
    rng = random.Random(seed)
    model = make_model("Claude Sonnet")
    batch = Batch.objects.create(workflow=catalog.workflow, name="Mix", state=Batch.State.SUBMITTED)
    for row in range(rng.randint(1, 60)):
        Run.objects.create(
            workflow=catalog.workflow,
            batch=batch,
            batch_row=row + 1,
            prompt_mode="stored",
            model_option=rng.choice([None, model]),
            submission=rng.choice(list(Submission.values)),
            status=rng.choice(list(RunStatus.values)),
        )
    # Moves that go around the hooks (as a bulk import would), then the recount.
    for run in Run.objects.filter(batch=batch).order_by("?")[: rng.randint(0, 10)]:
        Run.objects.filter(pk=run.pk).update(
            status=rng.choice(list(RunStatus.values)),
            submission=rng.choice(list(Submission.values)),
        )
    batch_cell_rollups_rebuild()

    progress = batch_progress(Batch.objects.get(pk=batch.pk))

    expected = progress_counted_run_by_run(batch)
    assert {name: getattr(progress, name) for name in expected} == expected
    assert sum(segment.count for segment in progress.segments) == expected["total"]


def test_a_batch_with_no_runs_yet_is_empty_and_finished(catalog):
    batch = Batch.objects.create(workflow=catalog.workflow, name="Empty")

    progress = batch_progress(batch)

    assert progress.total == 0 and progress.cancelled == 0 and progress.submitted == 0
