"""The batch grid's kept counters (`BatchCellRollup`) and the batches' `run_count` move with the
runs and always equal what `batch_cell_rollups_rebuild` recounts from the runs: after plans,
single launches into a batch, answers (one run and a chunk's many), costs, retries and
cancels. The grid read from them shows what a GROUP BY over the runs shows."""

import random
import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from launcher.batch_grid import batch_grid
from launcher.cyberdesk import types
from launcher.models import Batch, BatchCellRollup, PromptMode, Run, RunStatus, Submission
from launcher.services import run_sync
from launcher.services.batch_cell_rollups import batch_cell_rollups_rebuild
from launcher.services.batches import batch_cancel_rest
from tests.fake_cyberdesk import FakeCyberdesk, upstream_run
from tests.launch_api import NOW, make_model
from tests.services.test_batches import plan

pytestmark = pytest.mark.django_db

# Every stored column of a cell's row but its identity, read from the model (not a copy of the
# list the grid reads): a counter added later is compared with the recount without a word here.
COUNTERS = tuple(
    field.attname
    for field in BatchCellRollup._meta.concrete_fields
    if field.name not in ("id", "batch", "cell")
)
CHECKS = [
    [],
    [{"name": "Total", "status": "success"}],
    [{"name": "Total", "status": "success"}, {"name": "Date", "status": "failed"}],
    [{"name": "Total", "status": "running"}],  # not settled yet
]


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


def kept() -> dict:
    cells = {
        (row.batch_id, row.cell): tuple(getattr(row, name) for name in COUNTERS)
        for row in BatchCellRollup.objects.all()
    }
    return {"cells": cells, "run_count": dict(Batch.objects.values_list("pk", "run_count"))}


def recounted() -> dict:
    batch_cell_rollups_rebuild()
    return kept()


def answer(run, status, *, steps=None, checks=(), minutes=2):
    """The API's answer for `run`; `steps` (cached, agentic) or no usage reported at all."""
    return types.Run.from_api(
        upstream_run(
            run_id=run.cyberdesk_id or uuid.uuid4(),
            status=status,
            started_at=(NOW - timedelta(minutes=minutes)).isoformat(),
            ended_at=NOW.isoformat() if status in ("success", "task_failed", "error") else None,
            usage_metadata=steps
            and {"total_cached_steps": steps[0], "total_agentic_steps": steps[1]},
            post_run_checks=list(checks),
        )
    )


def test_a_plan_makes_its_cells_and_an_answer_a_cost_and_a_retry_move_them(
    catalog, operator, api, clock
):
    batch = plan(catalog, operator, rows=3, models=(None, catalog.model), choices=("stored",))
    cells = {row.cell: row for row in BatchCellRollup.objects.filter(batch=batch)}
    assert {cell: row.runs for cell, row in cells.items()} == {
        "default:stored": 3,
        f"{catalog.model.pk}:stored": 3,
    }
    run = Run.objects.filter(batch=batch, model_option=catalog.model).first()

    run_sync.run_apply_upstream(run, answer(run, "success", steps=(2, 5), checks=CHECKS[2]))
    api.costs[str(run.cyberdesk_id)] = 0.125
    run_sync.run_cost_fetch(run)
    row = BatchCellRollup.objects.get(batch=batch, cell=f"{catalog.model.pk}:stored")
    assert (row.runs, row.outcomes, row.succeeded, row.timed) == (3, 1, 1, 1)
    assert (row.checks_passed, row.checks_settled) == (1, 2)
    assert (row.cost_runs, row.cost_micro_usd) == (1, 125_000)
    assert (row.agentic_steps, row.agentic_runs, row.cached_steps, row.cached_runs) == (5, 1, 2, 1)

    # A retry: the run counts once, as its latest attempt; the first one's numbers leave.
    run_sync.run_apply_upstream(run, answer(run, "scheduling"), restart=True)
    row.refresh_from_db()
    assert (row.runs, row.outcomes, row.succeeded, row.cost_runs, row.timed) == (3, 0, 0, 0, 0)
    assert (row.checks_settled, row.agentic_runs) == (0, 0)
    assert kept() == recounted()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_after_a_mix_of_plans_answers_costs_retries_and_cancels_they_equal_the_recount(
    catalog, operator, api, clock, seed
):
    rng = random.Random(seed)
    other = make_model("GPT Operator")
    choices = ("stored", f"version:{catalog.v1.pk}", f"version:{catalog.v2.pk}")
    batches = [
        plan(catalog, operator, rows=4, models=(None, catalog.model), choices=choices[:2]),
        plan(catalog, operator, rows=3, models=(catalog.model, other), choices=choices[1:]),
    ]
    # A run outside any batch moves no batch's counters.
    Run.objects.create(
        workflow=catalog.workflow,
        prompt_mode=PromptMode.PINNED,
        prompt_version=catalog.v1,
        submission=Submission.ACCEPTED,
        cyberdesk_id=uuid.uuid4(),
    )
    for _ in range(80):
        move = rng.random()
        runs = list(Run.objects.order_by("pk"))
        run = rng.choice(runs)
        steps = rng.choice([None, (rng.randint(0, 9), rng.choice([rng.randint(0, 9), 2.5]))])
        checks = rng.choice(CHECKS)
        if move < 0.08:
            # A single launch into a batch (Run.save()'s insert hook), already carrying numbers.
            Run.objects.create(
                workflow=catalog.workflow,
                batch=rng.choice(batches),
                prompt_mode=PromptMode.PINNED,
                prompt_version=rng.choice([catalog.v1, catalog.v2]),
                model_option=rng.choice([None, other]),
                cyberdesk_id=uuid.uuid4(),
                submission=Submission.ACCEPTED,
                status=RunStatus.SUCCESS,
                started_at=NOW,
                ended_at=NOW + timedelta(seconds=rng.randint(1, 60)),
                cost_usd=Decimal("0.010000"),
                post_run_checks=checks,
            )
        elif move < 0.2:
            run_sync.run_apply_upstream(run, answer(run, "running"))
        elif move < 0.5:
            status = rng.choice(["success", "task_failed", "error", "cancelled"])
            minutes = rng.randint(1, 30)
            run_sync.run_apply_upstream(
                run, answer(run, status, steps=steps, checks=checks, minutes=minutes)
            )
        elif move < 0.62:
            # A chunk's answers: the bulk path.
            chunk = rng.sample(runs, min(len(runs), 5))
            status = rng.choice(["success", "task_failed", "running"])
            run_sync.runs_apply_upstream_many(
                [(member, answer(member, status, steps=steps, checks=checks)) for member in chunk]
            )
        elif move < 0.75 and run.is_finished and run.cyberdesk_id:
            api.costs[str(run.cyberdesk_id)] = rng.randint(1, 10_000) / 1_000_000
            run_sync.run_cost_fetch(run)
        elif move < 0.9 and run.is_finished and run.cyberdesk_id:
            run.attempt += 1  # as run_retry bumps it before applying the fresh attempt
            Run.objects.filter(pk=run.pk).update(attempt=run.attempt)
            run_sync.run_apply_upstream(run, answer(run, "scheduling"), restart=True)
        elif move >= 0.97:
            batch_cancel_rest(batch=rng.choice(batches), user=operator)  # the queued ones
    counters = kept()
    assert counters == recounted()
    assert (
        sum(values[2] for values in counters["cells"].values())
        == Run.objects.filter(batch__isnull=False).count()
    )
    assert counters["run_count"] == {
        batch.pk: Run.objects.filter(batch=batch).count() for batch in batches
    }


def _grid_numbers(batch):
    return [
        (
            cell.key,
            cell.runs,
            cell.outcomes,
            cell.succeeded,
            cell.checks_passed,
            cell.checks_settled,
            cell.cost_runs,
            cell.mean_cost,
            cell.agentic_steps,
            cell.cached_steps,
            cell.durations,
            cell.median_duration,
            cell.p90_duration,
        )
        for cell in batch_grid(batch=batch).cells
    ]


def test_the_grid_read_from_the_counters_is_the_grid_of_a_recount(catalog, operator, api, clock):
    batch = plan(catalog, operator, rows=6, models=(None, catalog.model), choices=("stored",))
    rng = random.Random(7)
    for run in Run.objects.filter(batch=batch):
        status = rng.choice(["success", "task_failed", "error", "cancelled", "running"])
        run_sync.run_apply_upstream(
            run,
            answer(
                run,
                status,
                steps=(1, rng.randint(1, 9)),
                checks=rng.choice(CHECKS),
                minutes=rng.randint(1, 20),
            ),
        )
        if run.is_finished:
            api.costs[str(run.cyberdesk_id)] = rng.randint(1, 10_000) / 1_000_000
            run_sync.run_cost_fetch(run)
    kept_grid = _grid_numbers(batch)

    batch_cell_rollups_rebuild()

    assert kept_grid == _grid_numbers(batch)
    assert sum(numbers[1] for numbers in kept_grid) == 12


def test_the_command_recounts_cells_that_drifted(catalog, operator):
    batch = plan(catalog, operator, rows=2)
    BatchCellRollup.objects.update(runs=99, outcomes=5)
    Batch.objects.update(run_count=7)
    out = StringIO()

    call_command("prompt_rollups_rebuild", stdout=out)

    (row,) = BatchCellRollup.objects.filter(batch=batch)
    assert (row.runs, row.outcomes) == (2, 0)
    assert Batch.objects.get(pk=batch.pk).run_count == 2
    assert "Recounted 1 batch cells" in out.getvalue()


def test_the_migrations_count_the_existing_batches(catalog, operator, api):
    import importlib

    from django.apps import apps

    batch = plan(catalog, operator, rows=3, models=(None, catalog.model))
    run = Run.objects.filter(batch=batch).first()
    run_sync.run_apply_upstream(run, answer(run, "success", steps=(1, 4), checks=CHECKS[2]))
    expected = kept()
    # As before the migrations: no cells, no run counts.
    BatchCellRollup.objects.all().delete()
    Batch.objects.update(run_count=0)

    importlib.import_module("launcher.migrations.0016_cells_batch_run_count").run_counts_from_runs(
        apps, None
    )
    assert Batch.objects.get(pk=batch.pk).run_count == 6
    importlib.import_module("launcher.migrations.0017_cells_batch_cell_rollup").cells_from_runs(
        apps, None
    )

    assert kept() == expected
