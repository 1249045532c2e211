"""The read side of the prompts page: how each prompt version's runs went.

Per version, never by loading or grouping the runs: runs, finished runs and
successes (with a 95% Wilson interval), median duration, mean cost, the share of steps that
were cached, first and last use. Queries do not grow with the run history:

- one read of the kept per-version counters (`PromptVersionRollup`, moved with the runs by
  `services/prompt_rollups`) for the counts, cost, steps and dates;
- two queries for the medians, the same on SQLite and PostgreSQL: the kept duration buckets
  of the workflow's versions (`PromptVersionDurationBucket`, summed in the database) say
  which bucket holds each version's middle run(s) and how many runs lie below it; then one
  ordered-offset probe per version inside that bucket of the (workflow, prompt_version,
  duration_ms) index, all versions in one UNION ALL (see `version_medians`). Exact, and the
  walk is one bucket's runs (1 % wide: under 1 % of the version's), not the version's. No
  run is sorted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection

from launcher.db_union import union_all_rows
from launcher.models import (
    PromptLabel,
    PromptVersion,
    PromptVersionDurationBucket,
    PromptVersionRollup,
    Run,
    Workflow,
    sha256_text,
)
from launcher.services.prompt_rollups import MICRO, duration_bucket_low
from launcher.services.prompts import prompt_variable_warnings
from launcher.services.stats import wilson_interval


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


@dataclass(frozen=True)
class _Probe:
    """Where a version's middle run(s) sit: the first of them is the `offset`-th duration
    (0-based) from `low` up, and there are `count` (1 for an odd number of runs, else 2)."""

    version_id: int
    low: int | None  # the median's bucket's lowest duration; None: bucket 0, no bound
    offset: int
    count: int


def _probe(version_id: int, *, bucket: int, below: int, total: int) -> _Probe:
    """The probe for a version of `total` timed runs whose first middle run, rank
    (total − 1) // 2, lies in `bucket`, above `below` runs of lower buckets. The second of two
    middle runs may lie in a later bucket: the probe reads on past its bucket's end, in
    duration order, to the next timed run, which is that one."""
    first = (total - 1) // 2
    return _Probe(
        version_id,
        low=duration_bucket_low(bucket),
        offset=first - below,
        count=total // 2 - first + 1,
    )


@functools.cache
def _median_buckets_sql() -> str:
    """The statement behind `_median_buckets`, written once per process: the same as the ORM
    would build with two `Window(Sum(...))` and a filter on them, without the ~2 ms of
    Python it takes Django to compile that on every page view."""
    quote = connection.ops.quote_name
    buckets = quote(PromptVersionDurationBucket._meta.db_table)
    versions = quote(PromptVersion._meta.db_table)
    # Rank (total − 1) / 2 lies in the bucket whose running sum (`through`) passes it first.
    # Whole or fractional division (PostgreSQL's SUM over bigint is a numeric) gives the
    # same rows: `through` and `runs` are whole.
    return f"""
        SELECT prompt_version_id, bucket, through, runs, total FROM (
            SELECT b.prompt_version_id, b.bucket, b.runs,
                SUM(b.runs) OVER (PARTITION BY b.prompt_version_id ORDER BY b.bucket) AS through,
                SUM(b.runs) OVER (PARTITION BY b.prompt_version_id) AS total
            FROM {buckets} b JOIN {versions} v ON v.id = b.prompt_version_id
            WHERE v.workflow_id = %s AND b.runs > 0
        ) AS sums
        WHERE through > (total - 1) / 2 AND through - runs <= (total - 1) / 2
        ORDER BY prompt_version_id
    """  # noqa: S608 (our own table names)


def _median_buckets(workflow: Workflow) -> list[_Probe]:
    """For each version of the workflow with timed runs, the bucket that holds its first
    middle run: one query, the buckets' running sums computed in the database (window
    functions, SQLite and PostgreSQL alike), so one row per version comes back however many
    buckets its durations use."""
    workflow_id = PromptVersion._meta.get_field("workflow").get_db_prep_value(
        workflow.pk, connection
    )
    with connection.cursor() as cursor:
        cursor.execute(_median_buckets_sql(), [workflow_id])
        rows = cursor.fetchall()
    # int(): PostgreSQL's SUM over bigint is a numeric.
    return [
        _probe(version_id, bucket=bucket, below=int(through) - runs, total=int(total))
        for version_id, bucket, through, runs, total in rows
    ]


def version_medians(workflow: Workflow) -> dict[int, timedelta]:
    """Median run duration per version id, exact, from the kept duration buckets and the
    stored `Run.duration_ms` on the (workflow, prompt_version, duration_ms) index; never by
    sorting, nor by walking more than one bucket's durations. Two queries whatever the
    history (one more per `db_union.TERMS_PER_QUERY` versions with runs), on SQLite and
    PostgreSQL alike:

    1. from the buckets of the workflow's versions (`_median_buckets`), for each version the
       bucket holding its middle run(s) and how many of its runs lie below that bucket;
    2. per version, its middle one or two durations read by ordered offset from that
       bucket's lowest duration (`duration_ms >= low ORDER BY duration_ms LIMIT 1|2 OFFSET
       rank − runs below`: a range of the index, about one bucket long at most), all
       versions in one UNION ALL.

    The two reads are separate statements: a run finishing between them can move one page's
    median by one rank; the next read is exact again.
    """
    probes = _median_buckets(workflow)
    timed = Run.objects.filter(
        workflow=workflow, prompt_version__isnull=False, duration_ms__isnull=False
    )
    if not probes:
        # Nothing timed: one indexed read instead of the probes, so the page's query count
        # stays the same (pinned) with or without timed runs.
        list(timed.values_list("duration_ms")[:1])
        return {}
    terms = []
    for probe in probes:
        term = timed.filter(prompt_version_id=probe.version_id)
        if probe.low is not None:
            term = term.filter(duration_ms__gte=probe.low)
        # The database walks the index from the bucket's start; it does not sort.
        sliced = term.order_by("duration_ms").values_list("prompt_version_id", "duration_ms")
        terms.append(sliced[probe.offset : probe.offset + probe.count].query.sql_with_params())
    middles: dict[int, list[int]] = {}
    for version_id, duration in union_all_rows(terms):
        middles.setdefault(version_id, []).append(duration)
    return {
        version_id: timedelta(milliseconds=sum(values) / len(values))
        for version_id, values in middles.items()
    }


def prompt_version_stats(
    workflow: Workflow, *, labels: list[PromptLabel] | None = None
) -> list[VersionStats]:
    """Every version of a workflow, newest first, with its labels and numbers. Five queries
    whatever the number of versions or runs (four when the workflow's `labels` are passed)."""
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
    medians = version_medians(workflow)
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
