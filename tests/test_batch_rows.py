"""launcher.batch_rows: the "By input row" view — one line per input row, one column per grid
cell, pages of ROWS_PER_PAGE rows, and the links that compare a row's runs."""

import pytest

from launcher import batch_rows
from launcher.batch_grid import batch_grid
from launcher.batch_rows import batch_rows_page
from launcher.models import Batch, Run, RunStatus
from tests.batch_data import add_runs

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(catalog):
    """Three input rows × (default · v1, default · v2, Sonnet · v1); row 3 has no Sonnet run."""
    batch = Batch.objects.create(workflow=catalog.workflow, name="Compare", is_matrix=True)
    add_runs(batch, version=catalog.v1, successes=2, failures=1)
    add_runs(batch, version=catalog.v2, successes=3)
    add_runs(batch, model=catalog.model, version=catalog.v1, successes=1, failures=1)
    return batch


def run_of(batch, row, *, model=None, version=None) -> Run:
    return Run.objects.get(batch=batch, batch_row=row, model_option=model, prompt_version=version)


def test_one_line_per_input_row_and_one_column_per_cell(catalog, batch):
    grid = batch_grid(batch=batch)

    page = batch_rows_page(batch=batch, columns=grid.cells)

    assert [column.label for column in page.columns] == [
        "Workflow default · v1",
        "Workflow default · v2",
        "Claude Sonnet · v1",
    ]
    assert [row.number for row in page.rows] == [1, 2, 3]
    first = page.rows[0]
    assert first.inputs == "customer_id=c-1"
    assert [entry.status for entry in first.entries] == ["success", "success", "success"]
    assert first.entries[0].run_id == run_of(batch, 1, version=catalog.v1).pk
    assert first.entries[0].duration.total_seconds() == 30
    third = page.rows[2]
    assert third.entries[0].status == RunStatus.TASK_FAILED
    assert third.entries[2] is None  # no Sonnet run on row 3
    assert not page.has_next and not page.has_previous


def test_a_row_compares_the_baselines_run_with_the_next(catalog, batch):
    grid = batch_grid(batch=batch)  # baseline: default · v1 (production)

    page = batch_rows_page(batch=batch, columns=grid.cells)

    base = run_of(batch, 3, version=catalog.v1).pk
    other = run_of(batch, 3, version=catalog.v2).pk
    assert page.rows[2].compare_url == f"/runs/compare/?a={base}&b={other}"
    # Two runs: the row's link is all; three runs: each other entry offers itself too.
    assert all(entry.compare_url == "" for entry in page.rows[2].entries if entry)
    sonnet = run_of(batch, 1, model=catalog.model, version=catalog.v1).pk
    base_1 = run_of(batch, 1, version=catalog.v1).pk
    assert page.rows[0].entries[2].compare_url == f"/runs/compare/?a={base_1}&b={sonnet}"
    assert page.rows[0].entries[0].compare_url == ""


def test_a_picked_baseline_goes_first_in_the_compare_link(catalog, batch):
    grid = batch_grid(batch=batch, baseline=f"{catalog.model.pk}:{catalog.v1.pk}")

    page = batch_rows_page(batch=batch, columns=grid.cells)

    sonnet = run_of(batch, 2, model=catalog.model, version=catalog.v1).pk
    assert page.rows[1].compare_url.startswith(f"/runs/compare/?a={sonnet}&b=")


def test_rows_come_a_page_at_a_time(catalog, monkeypatch):
    monkeypatch.setattr(batch_rows, "ROWS_PER_PAGE", 2)
    batch = Batch.objects.create(workflow=catalog.workflow, is_matrix=True)
    add_runs(batch, version=catalog.v1, successes=5)
    add_runs(batch, version=catalog.v2, successes=5)
    columns = batch_grid(batch=batch).cells

    pages = [batch_rows_page(batch=batch, columns=columns, page=n) for n in (1, 2, 3, 4)]

    assert [[row.number for row in page.rows] for page in pages] == [[1, 2], [3, 4], [5], []]
    assert [page.has_next for page in pages] == [True, True, False, False]
    assert pages[1].has_previous and (pages[1].first_index, pages[1].last_index) == (3, 4)
    assert all(len(row.entries) == 2 for page in pages for row in page.rows)


def test_only_the_rows_where_the_cells_differ(catalog, batch):
    # Rows 1 and 2 succeeded everywhere; row 3 failed on default · v1, succeeded on v2; and
    # Sonnet failed row 2: rows 2 and 3 answer "which inputs failed here but passed there?".
    columns = batch_grid(batch=batch).cells

    page = batch_rows_page(batch=batch, columns=columns, differing_only=True)

    assert [row.number for row in page.rows] == [2, 3]
    assert page.differing_only and not page.has_next
    assert [entry.status for entry in page.rows[0].entries] == ["success", "success", "task_failed"]
