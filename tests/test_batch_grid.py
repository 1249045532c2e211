"""launcher.batch_grid: the cells' numbers (in SQL on both databases), the default baseline,
a picked one, and each cell's difference with Fisher's exact test (two-sided, α = 0.05)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from launcher.batch_grid import TEST_NAME, batch_grid, cell_key
from launcher.models import Batch, PromptLabel, Run, RunStatus
from launcher.services.batch_cell_rollups import batch_cell_rollups_rebuild
from launcher.services.stats import BETTER, NO_DIFFERENCE, WORSE
from tests.batch_data import add_runs
from tests.launch_api import make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(catalog):
    return Batch.objects.create(workflow=catalog.workflow, name="Compare", is_matrix=True)


@pytest.fixture
def two_by_two(catalog, batch):
    """Workflow default × Sonnet, v1 (production) × v2: 5/10, 10/10, 7/10, 4/10."""
    add_runs(batch, version=catalog.v1, successes=5, failures=5)
    add_runs(batch, version=catalog.v2, successes=10, failures=0)
    add_runs(batch, model=catalog.model, version=catalog.v1, successes=7, failures=3)
    add_runs(batch, model=catalog.model, version=catalog.v2, successes=4, failures=6)
    return batch


def cells_by_label(grid):
    return {cell.label: cell for cell in grid.cells}


def test_the_default_baseline_is_production_with_the_workflows_default_model(catalog, two_by_two):
    grid = batch_grid(batch=two_by_two)

    assert grid.baseline.label == "Workflow default · v1"
    assert grid.baseline.labels == ["production"] and grid.baseline_note == "default"
    assert grid.baseline.comparison is None and grid.baseline.is_baseline
    assert [cell.label for cell in grid.cells] == [
        "Workflow default · v1",
        "Workflow default · v2",
        "Claude Sonnet · v1",
        "Claude Sonnet · v2",
    ]
    assert grid.test_name == TEST_NAME == "Fisher's exact test, two-sided, α = 0.05"


def test_each_cell_is_compared_with_the_baseline_by_fishers_exact_test(catalog, two_by_two):
    cells = cells_by_label(batch_grid(batch=two_by_two))

    # 10/10 against 5/10: two-sided Fisher p = 0.0325 (scipy.stats.fisher_exact) < 0.05.
    better = cells["Workflow default · v2"]
    assert better.comparison.verdict == BETTER and better.comparison.significant
    assert better.comparison.p_value == pytest.approx(0.03251, abs=1e-4)
    assert better.difference_display == "+50 pts" and better.p_value_display == "p = 0.033"
    # 7/10 against 5/10: p = 0.650 — a higher rate, but not a significant one.
    same = cells["Claude Sonnet · v1"]
    assert same.comparison.verdict == NO_DIFFERENCE and not same.comparison.significant
    assert same.difference_display == "+20 pts"
    assert cells["Claude Sonnet · v2"].comparison.verdict == NO_DIFFERENCE


def test_a_picked_baseline_turns_the_comparison_around(catalog, two_by_two):
    key = cell_key(None, catalog.v2.pk)

    grid = batch_grid(batch=two_by_two, baseline=key)

    cells = cells_by_label(grid)
    assert grid.baseline is cells["Workflow default · v2"] and grid.baseline_note == "picked"
    assert cells["Workflow default · v1"].comparison.verdict == WORSE
    assert cells["Workflow default · v2"].comparison is None
    # 4/10 against 10/10: p = 0.0108.
    assert cells["Claude Sonnet · v2"].comparison.verdict == WORSE


@pytest.mark.parametrize("baseline", ["nonsense", "default:999999", "", None])
def test_an_unknown_baseline_falls_back_to_the_default(catalog, two_by_two, baseline):
    grid = batch_grid(batch=two_by_two, baseline=baseline)

    assert grid.baseline.label == "Workflow default · v1"
    if baseline:
        assert grid.baseline_note == (
            "That baseline is not a cell of this batch. "
            "It is the production version with the workflow's default model."
        )


def test_without_a_default_model_cell_the_workflows_main_agent_model_is_the_default(catalog, batch):
    catalog.workflow.model_metadata = {"main_agent_model_id": str(catalog.model.pk)}
    catalog.workflow.save()
    other = make_model("GPT Operator")
    add_runs(batch, model=other, version=catalog.v1, successes=1)
    add_runs(batch, model=catalog.model, version=catalog.v1, successes=1)
    add_runs(batch, model=catalog.model, version=catalog.v2, successes=1)
    batch.refresh_from_db()

    grid = batch_grid(batch=batch)

    assert grid.baseline.label == "Claude Sonnet · v1" and grid.baseline_note == "default"


def test_without_production_in_the_batch_the_first_cell_is_the_baseline(catalog, batch):
    PromptLabel.objects.filter(pk=catalog.production.pk).update(version=catalog.v2)
    add_runs(batch, model=catalog.model, version=catalog.v1, successes=1)

    grid = batch_grid(batch=batch)

    assert grid.baseline.label == "Claude Sonnet · v1"
    assert grid.baseline_note == (
        "No cell uses the production version: the baseline is the first cell."
    )


def test_the_cells_numbers(catalog, batch):
    checks = [{"name": "Has invoice", "status": "success"}, {"name": "Total", "status": "failed"}]
    runs = add_runs(batch, version=catalog.v1, successes=8, failures=2, checks=checks, seconds=10)
    # Durations 10 … 19 s; costs on eight runs; steps reported by three, one not as a number.
    for n, run in enumerate(runs[:8]):
        run.cost_usd = Decimal("0.01") * (n + 1)
        run.save()
    usage = [
        {"total_agentic_steps": 10, "total_cached_steps": 2},
        {"total_agentic_steps": 20, "total_cached_steps": 4.5},
        {"total_agentic_steps": "n/a", "total_cached_steps": None},
    ]
    for run, metadata in zip(runs, usage, strict=False):
        run.usage_metadata = metadata
        run.save(update_fields=["usage_metadata"])  # save() stores the grid's step numbers
    # A cancelled and a queued run count as runs, not as outcomes.
    add_runs(batch, version=catalog.v1, successes=1, first_row=20)[0]
    Run.objects.filter(batch=batch, batch_row=20).update(status=RunStatus.CANCELLED)
    Run.objects.create(
        workflow=batch.workflow, batch=batch, batch_row=21, prompt_version=catalog.v1
    )
    # The costs, steps and cancel above are written behind run_sync's hooks, which keep the
    # cells' counters (tests/services/test_batch_cell_rollups.py): recount them.
    batch_cell_rollups_rebuild()

    (cell,) = batch_grid(batch=batch).cells

    assert (cell.runs, cell.outcomes, cell.succeeded) == (12, 10, 8)
    assert cell.rate_display == "80%"
    low, high = cell.interval  # Wilson 95 % for 8/10: 0.490 – 0.943
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert cell.interval_display == "49–94%"
    assert (cell.checks_passed, cell.checks_settled) == (10, 20)  # 10 runs with 2 checks each
    assert cell.median_duration == timedelta(seconds=14.5)
    # Of the outcomes only (not the cancelled run's 30 s); interpolated between ranks.
    assert cell.p90_duration == timedelta(seconds=18.1)
    assert cell.cost_runs == 8
    assert cell.mean_cost.quantize(Decimal("0.0001")) == Decimal("0.0450")
    assert cell.agentic_steps == pytest.approx(15.0)
    assert cell.cached_steps == pytest.approx(3.25)


def test_each_cell_links_to_its_runs(catalog, two_by_two):
    cells = cells_by_label(batch_grid(batch=two_by_two))

    assert cells["Workflow default · v1"].runs_url == (
        f"/runs/?batch={two_by_two.pk}&model=default&prompt={catalog.v1.pk}"
    )
    assert cells["Claude Sonnet · v2"].runs_url == (
        f"/runs/?batch={two_by_two.pk}&model={catalog.model.pk}&prompt={catalog.v2.pk}"
    )


def test_a_batch_without_runs_has_an_empty_grid(batch):
    grid = batch_grid(batch=batch)
    assert grid.cells == [] and grid.baseline is None


def test_without_the_default_model_the_production_version_still_leads(catalog, batch):
    add_runs(batch, model=catalog.model, version=catalog.v2, successes=1)
    add_runs(batch, model=catalog.model, version=catalog.v1, successes=1)

    grid = batch_grid(batch=batch)

    assert grid.baseline.label == "Claude Sonnet · v1"
    assert grid.baseline_note.startswith("No cell runs the production version with the workflow")
