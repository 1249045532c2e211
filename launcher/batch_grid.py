"""The batch page's grid (read side): one cell per (model, prompt version) of a batch, each
compared with a baseline cell.

Per cell: runs; the success rate of its outcomes (success / task failed / error — cancelled and
rejected runs tell nothing about the model or the prompt) with its 95 % Wilson interval; the
settled post-run checks passed; median and p90 duration of its outcomes; mean cost of the
runs with a known cost; mean agentic and cached steps of the runs that reported them.

Baseline and test: the user picks a cell (`?baseline=<cell key>`); by default it is the cell
with the workflow's current `production` version and its default model. Every other cell shows
its difference in success rate from the baseline and whether it is significant by **Fisher's
exact test, two-sided, α = 0.05** (`launcher.services.stats.rate_compare`). Why Fisher: batch
cells are small (10–50 runs, often with rates near 0 or 100 %), where the normal approximation
behind a z- or χ²-test is unreliable; Fisher's test is exact for any size. Two-sided, because
the user asks "is it different?" before knowing in which direction.

Three queries whatever the batch's size: the cells' kept counters (one `BatchCellRollup` row
per cell, kept by `launcher.services.batch_cell_rollups` as the runs move), the workflow's
labels, and the durations around each cell's median and p90 rank (read by ordered offset from
the `run_batch_cell_duration` index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from django.db import connection
from django.urls import reverse
from django.utils.http import urlencode

from launcher.db_union import union_all_rows
from launcher.models import Batch, BatchCellRollup, PromptLabel, Run, RunStatus
from launcher.services.prompt_rollups import MICRO
from launcher.services.stats import RateComparison, rate_compare, wilson_interval

OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)
ALPHA = 0.05
TEST_NAME = "Fisher's exact test, two-sided, α = 0.05"
DEFAULT_MODEL = "default"
STORED_PROMPT = "stored"


def cell_key(model_id: UUID | str | None, version_id: int | None) -> str:
    """A cell's name in a URL: `<model uuid>|default` `:` `<prompt version pk>|stored` — the
    same values the runs list's `model=` and `prompt=` filters take."""
    return f"{model_id or DEFAULT_MODEL}:{version_id or STORED_PROMPT}"


@dataclass
class GridCell:
    key: str
    model_id: UUID | None
    model_name: str
    version_id: int | None
    version_number: int | None
    labels: list[str]  # the workflow's labels pointing at this version now ("production")
    runs: int
    outcomes: int
    succeeded: int
    checks_passed: int
    checks_settled: int
    cost_runs: int
    mean_cost: Decimal | None
    agentic_steps: float | None
    cached_steps: float | None
    median_duration: timedelta | None = None
    p90_duration: timedelta | None = None
    durations: int = 0
    is_baseline: bool = False
    comparison: RateComparison | None = None
    runs_url: str = ""

    @property
    def prompt(self) -> str:
        return f"v{self.version_number}" if self.version_number else "Stored prompt"

    @property
    def label(self) -> str:
        """ "Claude Sonnet · v2" — how the page names the cell."""
        return f"{self.model_name} · {self.prompt}"

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.outcomes if self.outcomes else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.succeeded, self.outcomes) if self.outcomes else None

    @property
    def checks_rate(self) -> float | None:
        return self.checks_passed / self.checks_settled if self.checks_settled else None

    # How the page writes the numbers: "70%", "40–89%", "+20 pts".
    @property
    def rate_display(self) -> str:
        return percent(self.success_rate)

    @property
    def interval_display(self) -> str:
        interval = self.interval
        if interval is None:
            return ""
        return f"{percent(interval[0], sign=False)}–{percent(interval[1])}"

    @property
    def checks_display(self) -> str:
        return percent(self.checks_rate)

    @property
    def difference_display(self) -> str:
        if self.comparison is None or self.comparison.difference_points is None:
            return ""
        points = round(self.comparison.difference_points)
        return f"{points:+d} pts" if points else "±0 pts"

    @property
    def p_value_display(self) -> str:
        if self.comparison is None:
            return ""
        p = self.comparison.p_value
        return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def percent(fraction: float | None, *, sign: bool = True) -> str:
    """0.7 → "70%" (or "70" without the sign); "" for None."""
    if fraction is None:
        return ""
    value = round(100 * fraction)
    return f"{value}%" if sign else str(value)


@dataclass
class BatchGrid:
    cells: list[GridCell] = field(default_factory=list)
    baseline: GridCell | None = None
    # Why this baseline: "picked", "default", or a sentence when the default had to give way.
    baseline_note: str = ""
    test_name: str = TEST_NAME

    def cell(self, key: str) -> GridCell | None:
        return next((cell for cell in self.cells if cell.key == key), None)


def batch_grid(*, batch: Batch, baseline: str | None = None) -> BatchGrid:
    """The grid of `batch`, compared with the cell named `baseline` (a `cell_key`); an unknown
    or missing key falls back to the default baseline."""
    cells = _cells(batch)
    if not cells:
        return BatchGrid()
    _add_durations(batch, cells)
    runs_list = reverse("run_list")
    for cell in cells:
        cell.runs_url = f"{runs_list}?" + urlencode(
            {
                "batch": batch.pk,
                "model": cell.model_id or DEFAULT_MODEL,
                "prompt": cell.version_id or STORED_PROMPT,
            }
        )
    grid = BatchGrid(cells=cells)
    picked = grid.cell(baseline) if baseline else None
    if picked is not None:
        grid.baseline, grid.baseline_note = picked, "picked"
    else:
        grid.baseline, grid.baseline_note = _default_baseline(batch, cells)
        if baseline:
            default = (
                "It is the production version with the workflow's default model."
                if grid.baseline_note == "default"
                else grid.baseline_note
            )
            grid.baseline_note = f"That baseline is not a cell of this batch. {default}"
    base = grid.baseline
    base.is_baseline = True
    for cell in cells:
        if cell is not base and cell.outcomes and base.outcomes:
            cell.comparison = rate_compare(
                cell.succeeded, cell.outcomes, base.succeeded, base.outcomes, alpha=ALPHA
            )
    return grid


def _cells(batch: Batch) -> list[GridCell]:
    # The cells' kept counters (`BatchCellRollup`, `services/batch_cell_rollups`): one row per
    # cell, whatever the batch's size; no run is read.
    rollups = list(
        BatchCellRollup.objects.filter(batch=batch)
        .select_related("model_option", "prompt_version")
        .only(*_ROLLUP_FIELDS, "model_option__name", "prompt_version__number")
    )
    labels: dict[int, list[str]] = {}
    version_ids = {rollup.prompt_version_id for rollup in rollups if rollup.prompt_version_id}
    if version_ids:
        for name, version_id in PromptLabel.objects.filter(
            workflow_id=batch.workflow_id, version_id__in=version_ids
        ).values_list("name", "version_id"):
            labels.setdefault(version_id, []).append(name)
    cells = []
    for rollup in rollups:
        model, version = rollup.model_option, rollup.prompt_version
        cells.append(
            GridCell(
                key=cell_key(rollup.model_option_id, rollup.prompt_version_id),
                model_id=rollup.model_option_id,
                model_name=model.name if model else "Workflow default",
                version_id=rollup.prompt_version_id,
                version_number=version.number if version else None,
                labels=sorted(labels.get(rollup.prompt_version_id, [])),
                runs=rollup.runs,
                outcomes=rollup.outcomes,
                succeeded=rollup.succeeded,
                checks_passed=rollup.checks_passed,
                checks_settled=rollup.checks_settled,
                cost_runs=rollup.cost_runs,
                mean_cost=(
                    Decimal(rollup.cost_micro_usd) / MICRO / rollup.cost_runs
                    if rollup.cost_runs
                    else None
                ),
                agentic_steps=(
                    rollup.agentic_steps / rollup.agentic_runs if rollup.agentic_runs else None
                ),
                cached_steps=(
                    rollup.cached_steps / rollup.cached_runs if rollup.cached_runs else None
                ),
                durations=rollup.timed,
            )
        )
    # The workflow-default model first (it is what production launches use), then by name.
    cells.sort(key=lambda c: (c.model_id is not None, c.model_name, c.version_number or 0))
    return cells


_ROLLUP_FIELDS = (
    "model_option_id",
    "prompt_version_id",
    "runs",
    "outcomes",
    "succeeded",
    "checks_passed",
    "checks_settled",
    "cost_runs",
    "cost_micro_usd",
    "agentic_steps",
    "agentic_runs",
    "cached_steps",
    "cached_runs",
    "timed",
)


def _add_durations(batch: Batch, cells: list[GridCell]) -> None:
    """Median and p90 of each cell's outcomes (a cancelled run's length says nothing), read
    from the stored `Run.duration_ms` through the `run_batch_cell_duration` index by
    ordered offset: per cell and percentile, only the one or two entries around its rank
    (`percentile`'s linear interpolation, as PostgreSQL's `percentile_cont`), all cells in one
    UNION ALL query. `cell.durations` (timed outcomes, kept on the cell's counters) says where
    the ranks are; nothing is sorted and no run row is read whatever the batch's size.

    Each probe orders by the index's own columns after `batch` (model, version, duration):
    with the cell's model and version fixed that is the duration order, and it is the index
    order on both databases — PostgreSQL does not count `model_option_id IS NULL` (the
    workflow-default cell) as fixing the column, so `ORDER BY duration_ms` alone would sort."""
    terms = []
    for index, cell in enumerate(cells):
        if not cell.durations:
            continue
        for which, q in enumerate(_QUANTILES):
            position = q * (cell.durations - 1)
            below, above = math.floor(position), math.ceil(position)
            terms.append(_probe(batch, cell, index, which, offset=below, count=above - below + 1))
    if not terms:
        # Nothing timed: one indexed read instead of the probes, so the page's query count
        # stays the same (pinned) with or without timed runs.
        timed = Run.objects.filter(batch=batch, status__in=OUTCOMES, duration_ms__isnull=False)
        list(timed.values_list("duration_ms")[:1])
        return
    found: dict[tuple[int, int], list[int]] = {}
    for index, which, duration in union_all_rows(terms):
        found.setdefault((index, which), []).append(duration)
    for index, cell in enumerate(cells):
        for which, q in enumerate(_QUANTILES):
            values = sorted(found.get((index, which), []))
            if not values:
                continue
            position = q * (cell.durations - 1)
            fraction = position - math.floor(position)
            ms = values[0] + (values[-1] - values[0]) * fraction
            if q == 0.5:
                cell.median_duration = timedelta(milliseconds=ms)
            else:
                cell.p90_duration = timedelta(milliseconds=ms)


_QUANTILES = (0.5, 0.9)


def _probe(
    batch: Batch, cell: GridCell, index: int, which: int, *, offset: int, count: int
) -> tuple[str, list]:
    """One probe's SQL and parameters: `count` durations of `cell`'s timed outcomes from rank
    `offset`, tagged (index, which). Written out rather than built as a queryset: compiling
    two querysets per cell cost more than the page's whole index walk (about 1 ms each under
    load against ~2 ms for all the probes of a 10-cell, 10,000-run batch). Names come from the
    model and values are parameters; the tags, offset and count are this function's ints."""
    quote = connection.ops.quote_name
    meta = Run._meta

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    def equals(name: str, value) -> tuple[str, list]:
        if value is None:
            return f"{column(name)} IS NULL", []
        return f"{column(name)} = %s", [meta.get_field(name).get_db_prep_value(value, connection)]

    model_sql, model_params = equals("model_option", cell.model_id)
    version_sql, version_params = equals("prompt_version", cell.version_id)
    statuses = ", ".join(["%s"] * len(OUTCOMES))
    sql = (
        f"SELECT {int(index)} AS term_cell, {int(which)} AS term_q, {column('duration_ms')}"  # noqa: S608
        f" FROM {quote(meta.db_table)}"
        f" WHERE {column('batch')} = %s AND {column('status')} IN ({statuses})"
        f" AND {column('duration_ms')} IS NOT NULL AND {model_sql} AND {version_sql}"
        f" ORDER BY {column('model_option')}, {column('prompt_version')}, {column('duration_ms')}"
        f" LIMIT {int(count)} OFFSET {int(offset)}"
    )
    return sql, [batch.pk, *(str(status) for status in OUTCOMES), *model_params, *version_params]


def _default_baseline(batch: Batch, cells: list[GridCell]) -> tuple[GridCell, str]:
    """The cell with the current production version and the workflow's default model; the
    note says what was chosen instead when the batch has no such cell."""
    production = next(
        (cell for cell in cells if PromptLabel.PRODUCTION in cell.labels),
        None,
    )
    if production is None:
        return cells[0], "No cell uses the production version: the baseline is the first cell."
    version_id = production.version_id
    metadata = batch.workflow.model_metadata or {}
    main_agent = metadata.get("main_agent_model_id") if isinstance(metadata, dict) else None
    for wanted in (None, main_agent):
        for cell in cells:
            if cell.version_id == version_id and str(cell.model_id or "") == str(wanted or ""):
                return cell, "default"
    return production, (
        "No cell runs the production version with the workflow's default model: the baseline"
        " is the production version with another model."
    )
