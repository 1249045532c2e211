"""The read side of the prompts page: how each prompt version's runs went.

Per version, never by loading or grouping the runs: runs, finished runs and
successes (with a 95% Wilson interval), median duration, mean cost, the share of steps that
were cached, first and last use. Queries do not grow with the run history:

- one read of the kept per-version counters (`PromptVersionRollup`, moved with the runs by
  `services/prompt_rollups`) for the counts, cost, steps and dates;
- one query for the medians, read from the stored `Run.duration_ms` through the
  (workflow, prompt_version, duration_ms) index: `percentile_cont(0.5)` over an index-only
  scan on PostgreSQL; elsewhere (SQLite) each version's middle one or two index entries by
  ordered offset, all versions in one UNION ALL (see `version_medians`). Nothing is sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Aggregate, Count, FloatField

from launcher.models import (
    PromptLabel,
    PromptVersion,
    PromptVersionRollup,
    Run,
    Workflow,
    sha256_text,
)
from launcher.services.prompt_rollups import MICRO
from launcher.services.prompts import prompt_variable_warnings
from launcher.services.stats import wilson_interval


class Median(Aggregate):
    """PostgreSQL's `percentile_cont(0.5) WITHIN GROUP (ORDER BY …)`: the interpolated median."""

    function = "PERCENTILE_CONT"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"


@dataclass(frozen=True)
class VersionStats:
    version: PromptVersion
    labels: list[str]
    is_latest: bool
    is_stored: bool  # its text is the workflow's stored (published) prompt
    runs: int
    finished: int  # runs that reached an outcome: success, task failed, error
    succeeded: int
    median_duration: timedelta | None
    mean_cost: Decimal | None
    cached_steps: int
    agentic_steps: int
    first_used: datetime | None
    last_used: datetime | None
    warnings: list[str]

    @property
    def success_rate(self) -> float | None:
        """Successes among runs that reached an outcome (cancelled and rejected runs excluded)."""
        return self.succeeded / self.finished if self.finished else None

    @property
    def success_percent(self) -> int | None:
        rate = self.success_rate
        return None if rate is None else round(rate * 100)

    @property
    def interval_percent(self) -> tuple[int, int] | None:
        if not self.finished:
            return None
        low, high = wilson_interval(self.succeeded, self.finished)
        return round(100 * low), round(100 * high)

    @property
    def cached_share_percent(self) -> int | None:
        total = self.cached_steps + self.agentic_steps
        return round(100 * self.cached_steps / total) if total else None

    @property
    def median_duration_display(self) -> str:
        if self.median_duration is None:
            return ""
        seconds = round(self.median_duration.total_seconds())
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        if hours:
            return f"{hours}h {minutes:02d}m"
        return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


# SQLite caps a compound SELECT at 500 terms; one term per version, so a workflow with more
# versions than this takes one more query per this many.
_TERMS_PER_QUERY = 200


def version_medians(
    workflow: Workflow, *, counts: dict[int, int] | None = None
) -> dict[int, timedelta]:
    """Median run duration per version id, from the stored `Run.duration_ms` and the
    (workflow, prompt_version, duration_ms) index, never by sorting the runs.

    PostgreSQL: `percentile_cont(0.5)` per version over an index-only scan. Elsewhere
    (SQLite): for each version, the middle one or two entries of its index range, read by
    ordered offset (`counts` — timed runs per version — says where the middle is; the prompts
    page passes them from its aggregate, otherwise one indexed GROUP BY counts them), all
    versions in one UNION ALL query.
    """
    timed = Run.objects.filter(
        workflow=workflow, prompt_version__isnull=False, duration_ms__isnull=False
    )
    if connection.vendor == "postgresql":
        rows = (
            timed.values("prompt_version_id")
            .annotate(median=Median("duration_ms", output_field=FloatField()))
            .order_by()
        )
        return {row["prompt_version_id"]: timedelta(milliseconds=row["median"]) for row in rows}
    if counts is None:
        counts = dict(
            timed.values("prompt_version_id")
            .annotate(n=Count("duration_ms"))
            .order_by()
            .values_list("prompt_version_id", "n")
        )
    wanted = sorted((version_id, n) for version_id, n in counts.items() if n)
    if not wanted:
        # Nothing timed: one indexed read instead of the probes, so the page's query count
        # stays the same (pinned) with or without timed runs.
        list(timed.values_list("duration_ms")[:1])
        return {}
    middles: dict[int, list[int]] = {}
    for start in range(0, len(wanted), _TERMS_PER_QUERY):
        # The middle entry (odd count) or the two middle entries (even) of each version's
        # index range, by ordered offset; the database walks the index, it does not sort.
        terms = [
            timed.filter(prompt_version_id=version_id)
            .order_by("duration_ms")
            .values_list("prompt_version_id", "duration_ms")[(n - 1) // 2 : n // 2 + 1]
            for version_id, n in wanted[start : start + _TERMS_PER_QUERY]
        ]
        # Django refuses sliced terms in a compound query on SQLite; SQLite itself accepts
        # them as subqueries, so the terms' own compiled SQL is joined here (all parameters).
        compiled = [term.query.sql_with_params() for term in terms]
        sql = " UNION ALL ".join(
            f"SELECT * FROM ({term_sql}) AS term_{n}"  # noqa: S608
            for n, (term_sql, _) in enumerate(compiled)
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [param for _, params in compiled for param in params])
            rows = cursor.fetchall()
        for version_id, duration in rows:
            middles.setdefault(version_id, []).append(duration)
    medians = {
        version_id: timedelta(milliseconds=sum(values) / len(values))
        for version_id, values in middles.items()
    }
    return medians


def prompt_version_stats(
    workflow: Workflow, *, labels: list[PromptLabel] | None = None
) -> list[VersionStats]:
    """Every version of a workflow, newest first, with its labels and numbers. Four queries
    whatever the number of versions or runs (three when the workflow's `labels` are passed)."""
    versions = list(
        PromptVersion.objects.filter(workflow=workflow).select_related("author").order_by("-number")
    )
    if labels is None:
        labels = list(PromptLabel.objects.filter(workflow=workflow))
    names: dict[int, list[str]] = {}
    for label in labels:
        names.setdefault(label.version_id, []).append(label.name)
    # Kept counters, one row per version (`services/prompt_rollups`): no scan of the runs.
    numbers = {
        rollup.prompt_version_id: rollup
        for rollup in PromptVersionRollup.objects.filter(prompt_version__workflow=workflow)
    }
    medians = version_medians(
        workflow, counts={version_id: rollup.timed for version_id, rollup in numbers.items()}
    )
    stored_sha = sha256_text(workflow.main_prompt or "")
    stats = []
    for index, version in enumerate(versions):
        rollup = numbers.get(version.pk) or PromptVersionRollup()
        stats.append(
            VersionStats(
                version=version,
                labels=sorted(names.get(version.pk, [])),
                is_latest=index == 0,
                is_stored=version.sha256 == stored_sha,
                runs=rollup.runs,
                finished=rollup.finished,
                succeeded=rollup.succeeded,
                median_duration=medians.get(version.pk),
                mean_cost=(
                    Decimal(rollup.cost_micro_usd) / MICRO / rollup.cost_runs
                    if rollup.cost_runs
                    else None
                ),
                cached_steps=rollup.cached_steps,
                agentic_steps=rollup.agentic_steps,
                first_used=rollup.first_used,
                last_used=rollup.last_used,
                warnings=prompt_variable_warnings(workflow, version.text),
            )
        )
    return stats
