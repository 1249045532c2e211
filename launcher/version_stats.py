"""The read side of the prompts page: how each prompt version's runs went.

Per version, from SQL aggregates (never by loading the runs): runs, finished runs and
successes (with a 95% Wilson interval), median duration, mean cost, the share of steps that
were cached, first and last use. Queries do not grow with the run history:

- one aggregate query (GROUP BY version) for the counts, cost, steps and dates;
- one query for the medians: `percentile_cont(0.5)` on PostgreSQL; elsewhere (SQLite) a window
  query that numbers each version's durations in order and keeps only the middle one or two
  rows per version — the database sorts, Python averages at most two values per version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    Min,
    Q,
    Sum,
    Window,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, RowNumber

from launcher.models import PromptLabel, PromptVersion, Run, RunStatus, Workflow, sha256_text
from launcher.services.prompts import prompt_variable_warnings
from launcher.services.stats import wilson_interval

OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)


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


def _duration():
    return ExpressionWrapper(F("ended_at") - F("started_at"), output_field=DurationField())


def _steps(key: str):
    return Sum(Cast(KT(f"usage_metadata__{key}"), IntegerField()))


def version_medians(workflow: Workflow) -> dict[int, timedelta]:
    """Median run duration per version id, in one query (see the module docstring)."""
    runs = Run.objects.filter(
        workflow=workflow,
        prompt_version__isnull=False,
        started_at__isnull=False,
        ended_at__isnull=False,
    )
    if connection.vendor == "postgresql":
        return {
            row["prompt_version_id"]: row["median"]
            for row in runs.values("prompt_version_id").annotate(
                median=Median(_duration(), output_field=DurationField())
            )
        }
    middle = (
        runs.annotate(
            duration=_duration(),
            position=Window(
                RowNumber(), partition_by=[F("prompt_version_id")], order_by=[F("duration").asc()]
            ),
            total=Window(Count("pk"), partition_by=[F("prompt_version_id")]),
        )
        # The middle row (odd count) or the two middle rows (even): integer division.
        .filter(Q(position=(F("total") + 1) / 2) | Q(position=(F("total") + 2) / 2))
        .values_list("prompt_version_id", "duration")
    )
    found: dict[int, list[timedelta]] = {}
    for version_id, duration in middle:
        found.setdefault(version_id, []).append(duration)
    return {
        version_id: sum(values, timedelta()) / len(values) for version_id, values in found.items()
    }


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
    numbers = {
        row["prompt_version_id"]: row
        for row in Run.objects.filter(workflow=workflow, prompt_version__isnull=False)
        .values("prompt_version_id")
        .annotate(
            runs=Count("pk"),
            finished=Count("pk", filter=Q(status__in=OUTCOMES)),
            succeeded=Count("pk", filter=Q(status=RunStatus.SUCCESS)),
            mean_cost=Avg("cost_usd"),
            cached=_steps("total_cached_steps"),
            agentic=_steps("total_agentic_steps"),
            first_used=Min("created_at"),
            last_used=Max("created_at"),
        )
        .order_by()
    }
    medians = version_medians(workflow)
    stored_sha = sha256_text(workflow.main_prompt or "")
    stats = []
    for index, version in enumerate(versions):
        row = numbers.get(version.pk, {})
        mean_cost = row.get("mean_cost")
        stats.append(
            VersionStats(
                version=version,
                labels=sorted(names.get(version.pk, [])),
                is_latest=index == 0,
                is_stored=version.sha256 == stored_sha,
                runs=row.get("runs", 0),
                finished=row.get("finished", 0),
                succeeded=row.get("succeeded", 0),
                median_duration=medians.get(version.pk),
                mean_cost=Decimal(mean_cost) if mean_cost is not None else None,
                cached_steps=row.get("cached") or 0,
                agentic_steps=row.get("agentic") or 0,
                first_used=row.get("first_used"),
                last_used=row.get("last_used"),
                warnings=prompt_variable_warnings(workflow, version.text),
            )
        )
    return stats
