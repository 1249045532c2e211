"""`services/rollups`: one call per hook point moves every kept counter (the prompt versions'
and the batch cells'), and one rebuild recounts them all. The property tests of each counter
(tests/services/test_prompt_rollups.py, test_batch_cell_rollups.py) check the numbers after
random mixes; these check that the one call reaches every counter."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from launcher.models import (
    Batch,
    BatchCellRollup,
    PromptMode,
    PromptVersionDurationBucket,
    PromptVersionRollup,
    Run,
    RunStatus,
    Submission,
)
from launcher.services.rollups import (
    KEPT_COUNTERS,
    rollups_count_launched,
    rollups_rebuild,
    rollups_record,
    rollups_snapshot,
)
from tests.launch_api import NOW
from tests.services.test_batches import plan

pytestmark = pytest.mark.django_db


def _numbers(batch, version) -> tuple:
    version_row = PromptVersionRollup.objects.get(prompt_version=version)
    cell = BatchCellRollup.objects.get(batch=batch, prompt_version=version)
    return (
        (version_row.runs, version_row.finished, version_row.cost_runs, version_row.timed),
        (cell.runs, cell.outcomes, cell.cost_runs, cell.timed),
        Batch.objects.get(pk=batch.pk).run_count,
        list(PromptVersionDurationBucket.objects.exclude(runs=0).values_list("runs", flat=True)),
    )


def test_one_snapshot_and_record_move_the_version_and_the_cell_alike(catalog, operator, clock):
    batch = plan(catalog, operator, rows=2, choices=(f"version:{catalog.v1.pk}",))
    run = Run.objects.filter(batch=batch).first()
    assert _numbers(batch, catalog.v1) == ((2, 0, 0, 0), (2, 0, 0, 0), 2, [])

    before = rollups_snapshot(run)
    assert len(before) == len(KEPT_COUNTERS) == 2
    run.status, run.cost_usd = RunStatus.SUCCESS, Decimal("0.5")
    run.started_at, run.ended_at = NOW - timedelta(seconds=5), NOW
    run.save()
    rollups_record(run, before)

    assert _numbers(batch, catalog.v1) == ((2, 1, 1, 1), (2, 1, 1, 1), 2, [1])


def test_one_launch_call_counts_on_the_version_the_cell_and_the_batch(catalog, operator):
    batch = plan(catalog, operator, rows=1, choices=(f"version:{catalog.v1.pk}",))
    twin = Run(
        workflow=catalog.workflow,
        batch=batch,
        prompt_mode=PromptMode.PINNED,
        prompt_version=catalog.v1,
        cyberdesk_id=uuid.uuid4(),
        submission=Submission.ACCEPTED,
    )
    Run.objects.bulk_create([twin])  # skips Run.save()'s hook: the one call instead

    rollups_count_launched([twin])

    assert _numbers(batch, catalog.v1) == ((2, 0, 0, 0), (2, 0, 0, 0), 2, [])


def test_one_rebuild_recounts_every_kept_counter(catalog, operator):
    batch = plan(catalog, operator, rows=3, choices=(f"version:{catalog.v1.pk}",))
    PromptVersionRollup.objects.update(runs=99)
    BatchCellRollup.objects.update(runs=7, outcomes=5)
    Batch.objects.update(run_count=0)

    assert rollups_rebuild() == {"prompt versions": 1, "batch cells": 1}

    assert _numbers(batch, catalog.v1) == ((3, 0, 0, 0), (3, 0, 0, 0), 3, [])
