"""The batch page's "By input row" view (read side): one line per input row, one column per
grid cell, each entry the run's status and duration.

Bounded for any batch size: a page holds `ROWS_PER_PAGE` input rows; two queries read it (the
page's row numbers from the `(batch, batch_row)` index, then only those rows' runs, with the
few columns an entry shows — outputs, histories and checks stay in the database).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode

from launcher.batch_grid import GridCell, cell_key
from launcher.models import Batch, Run

ROWS_PER_PAGE = 50
INPUT_SUMMARY_LENGTH = 80
COMPARE_PATH = "/runs/compare/"  # DESIGN.md: /runs/compare/?a=<run>&b=<run>


@dataclass
class RowEntry:
    run_id: int
    status: str
    status_display: str
    duration: timedelta | None
    compare_url: str = ""  # this run beside the row's first run (rows with more than two runs)


@dataclass
class InputRow:
    number: int
    inputs: str  # "customer_id=c-100, age=42", cut short
    entries: list[RowEntry | None]  # one per column; None: no run for that cell in this row
    compare_url: str = ""  # the row's first two runs side by side


@dataclass
class RowsPage:
    columns: list[GridCell]
    rows: list[InputRow] = field(default_factory=list)
    page: int = 1
    has_next: bool = False
    differing_only: bool = False

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def first_index(self) -> int:
        return (self.page - 1) * ROWS_PER_PAGE + 1

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.rows) - 1


def batch_rows_page(
    *, batch: Batch, columns: list[GridCell], page: int = 1, differing_only: bool = False
) -> RowsPage:
    """Page `page` (from 1) of the batch's input rows. `columns` are the grid's cells, baseline
    included: the compare link of a row puts the baseline's run first when the row has one.

    `differing_only`: only the rows whose runs did not all end the same way (one succeeded
    where another failed: "which inputs failed on v2 but passed on v1?"), found by one
    GROUP BY over the batch's runs."""
    page = max(1, page)
    start = (page - 1) * ROWS_PER_PAGE
    runs_of_rows = Run.objects.filter(batch=batch, batch_row__isnull=False)
    if differing_only:
        numbers_query = (
            runs_of_rows.values("batch_row")
            .annotate(outcomes=Count("status", distinct=True))
            .filter(outcomes__gt=1)
            .order_by("batch_row")
            .values_list("batch_row", flat=True)
        )
    else:
        numbers_query = (
            runs_of_rows.order_by("batch_row").values_list("batch_row", flat=True).distinct()
        )
    numbers = list(numbers_query[start : start + ROWS_PER_PAGE + 1])
    result = RowsPage(
        columns=columns,
        page=page,
        has_next=len(numbers) > ROWS_PER_PAGE,
        differing_only=differing_only,
    )
    numbers = numbers[:ROWS_PER_PAGE]
    if not numbers:
        return result
    runs = (
        Run.objects.filter(batch=batch, batch_row__in=numbers)
        .order_by("batch_row", "pk")
        .only(
            "id",
            "batch_row",
            "model_option_id",
            "prompt_version_id",
            "status",
            "started_at",
            "ended_at",
            "input_values",
        )
    )
    position = {column.key: n for n, column in enumerate(columns)}
    baseline = next((n for n, column in enumerate(columns) if column.is_baseline), None)
    rows: dict[int, InputRow] = {}
    for run in runs:
        row = rows.get(run.batch_row)
        if row is None:
            row = rows[run.batch_row] = InputRow(
                number=run.batch_row,
                inputs=_summary(run.input_values),
                entries=[None] * len(columns),
            )
        n = position.get(cell_key(run.model_option_id, run.prompt_version_id))
        if n is None or row.entries[n] is not None:
            continue  # a cell the grid does not show, or a second run in one cell (kept first)
        row.entries[n] = RowEntry(
            run_id=run.pk,
            status=run.status,
            status_display=run.get_status_display(),
            duration=run.duration,
        )
    for row in rows.values():
        _add_compare_links(row, baseline)
    result.rows = [rows[number] for number in numbers if number in rows]
    return result


def compare_url(a: int, b: int) -> str:
    try:
        path = reverse("run_compare")
    except NoReverseMatch:  # the compare page lands separately; its address is fixed
        path = COMPARE_PATH
    return f"{path}?" + urlencode({"a": a, "b": b})


def _add_compare_links(row: InputRow, baseline: int | None) -> None:
    present = [entry for entry in row.entries if entry is not None]
    if len(present) < 2:
        return
    first = row.entries[baseline] if baseline is not None else None
    first = first or present[0]
    others = [entry for entry in present if entry is not first]
    row.compare_url = compare_url(first.run_id, others[0].run_id)
    if len(others) > 1:
        # More than two runs: each entry offers itself beside the row's first (the baseline's).
        for entry in others:
            entry.compare_url = compare_url(first.run_id, entry.run_id)


def _summary(values: Any) -> str:
    if not isinstance(values, dict) or not values:
        return ""
    text = ", ".join(f"{key}={_short(value)}" for key, value in values.items())
    return text if len(text) <= INPUT_SUMMARY_LENGTH else text[: INPUT_SUMMARY_LENGTH - 1] + "…"


def _short(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)
