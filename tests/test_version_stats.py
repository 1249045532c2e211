"""Per-version numbers of the prompts page, from the kept counters and duration buckets: known
values, exact medians (against `statistics.median`) on SQLite and PostgreSQL alike, in a fixed
number of queries."""

import random
import statistics
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from launcher.models import PromptVersionDurationBucket, Run, RunStatus, Workflow
from launcher.services.prompt_rollups import (
    DURATION_EDGES_MS,
    duration_bucket,
    prompt_rollups_rebuild,
)
from launcher.services.prompts import prompt_version_create
from launcher.version_stats import _probe, prompt_version_stats, version_medians

pytestmark = pytest.mark.django_db


@pytest.fixture
def workflow():
    return Workflow.objects.create(id=uuid.uuid4(), name="Eligibility", main_prompt="two")


def add(workflow, version, seconds, *, status=RunStatus.SUCCESS, cost=None, usage=None, ago=0):
    created = timezone.now() - timedelta(days=ago)
    run = Run.objects.create(
        workflow=workflow,
        prompt_mode="pinned",
        prompt_version=version,
        status=status,
        started_at=created if seconds is not None else None,
        ended_at=created + timedelta(seconds=seconds) if seconds is not None else None,
        cost_usd=cost,
        usage_metadata=usage,
    )
    Run.objects.filter(pk=run.pk).update(created_at=created)
    # Runs made here skip the launch and sync hooks that keep the counters: recount them.
    prompt_rollups_rebuild()
    return run


def test_medians_interpolate_like_percentile_cont(workflow):
    v1 = prompt_version_create(workflow=workflow, text="one")
    v2 = prompt_version_create(workflow=workflow, text="two")
    for seconds in (40, 10, 30, 20):
        add(workflow, v1, seconds)
    for seconds in (90, 10, 20):
        add(workflow, v2, seconds)
    add(workflow, v2, None, status=RunStatus.CANCELLED)  # no duration: left out
    medians = version_medians(workflow)
    assert medians == {v1.pk: timedelta(seconds=25), v2.pk: timedelta(seconds=20)}


def test_counts_interval_cost_cached_share_and_first_last_use(
    workflow, clock, django_assert_num_queries
):
    v1 = prompt_version_create(workflow=workflow, text="one")
    prompt_version_create(workflow=workflow, text="two")
    add(
        workflow,
        v1,
        60,
        cost=Decimal("0.10"),
        usage={"total_cached_steps": 3, "total_agentic_steps": 1},
        ago=3,
    )
    add(
        workflow,
        v1,
        60,
        status=RunStatus.TASK_FAILED,
        cost=Decimal("0.30"),
        usage={"total_cached_steps": 1, "total_agentic_steps": 3},
        ago=1,
    )
    add(workflow, v1, None, status=RunStatus.CANCELLED, usage={"other": "x"}, ago=2)
    with django_assert_num_queries(5):
        stats = {row.version.number: row for row in prompt_version_stats(workflow)}
    one = stats[1]
    assert (one.runs, one.finished, one.succeeded) == (3, 2, 1)
    assert one.success_percent == 50 and one.interval_percent == (9, 91)
    assert one.mean_cost == Decimal("0.2")
    assert (one.cached_steps, one.agentic_steps, one.cached_share_percent) == (4, 4, 50)
    assert one.last_used - one.first_used == timedelta(days=2)
    assert not one.is_stored and stats[2].is_stored  # the workflow's stored prompt is "two"
    two = stats[2]
    assert two.runs == 0 and two.mean_cost is None and two.cached_share_percent is None
    assert two.first_used is None and two.interval_percent is None


def test_the_query_count_does_not_grow_with_history(workflow, django_assert_num_queries):
    versions = [prompt_version_create(workflow=workflow, text=f"text {n}") for n in range(5)]
    for n in range(200):
        add(
            workflow,
            versions[n % 5],
            n + 1,
            usage={"total_cached_steps": 1, "total_agentic_steps": 2},
        )
    with django_assert_num_queries(5):
        stats = prompt_version_stats(workflow)
    assert sum(row.runs for row in stats) == 200


def _durations(rng: random.Random, count: int) -> list[int]:
    """`count` durations in ms that hit the awkward places: bucket edges and one below them,
    ties, under a second, over a day, and ordinary lognormal minutes."""
    picks = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.25:
            edge = rng.choice(DURATION_EDGES_MS)
            picks.append(edge - rng.choice((0, 1)))
        elif kind < 0.4 and picks:
            picks.append(rng.choice(picks))  # a tie
        elif kind < 0.5:
            picks.append(rng.randint(0, 999))
        elif kind < 0.55:
            picks.append(rng.randint(86_400_000, 200_000_000))
        else:
            picks.append(round(rng.lognormvariate(11.5, 0.6)))
    return picks


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_medians_are_exactly_the_median_of_the_durations(workflow, seed):
    rng = random.Random(seed)
    # Versions with no run, one, two (even), three, and many (even and odd counts).
    sizes = [0, 1, 2, 3, rng.randint(40, 80) * 2, rng.randint(40, 80) * 2 + 1]
    versions = [prompt_version_create(workflow=workflow, text=f"text {n}") for n in sizes]
    wanted = {}
    runs = []
    for version, size in zip(versions, sizes, strict=True):
        durations = _durations(rng, size)
        if durations:
            wanted[version.pk] = timedelta(milliseconds=statistics.median(durations))
        runs += [
            Run(
                workflow=workflow,
                prompt_mode="pinned",
                prompt_version=version,
                status=RunStatus.SUCCESS,
                duration_ms=duration,
            )
            for duration in durations
        ]
    # An untimed run counts for nothing.
    runs.append(Run(workflow=workflow, prompt_mode="pinned", prompt_version=versions[3]))
    rng.shuffle(runs)
    Run.objects.bulk_create(runs)
    prompt_rollups_rebuild()  # bulk_create skips the hooks that keep the buckets
    assert version_medians(workflow) == wanted


def test_the_probe_reads_from_the_middle_bucket_and_on_into_the_next(
    workflow, django_assert_num_queries
):
    version = prompt_version_create(workflow=workflow, text="one")
    # Six runs: ranks 2 and 3 (0-based) are the middle two. Rank 2 is the last run of the
    # 1 s bucket, rank 3 the first of the 5 s one, read on past the 1 s bucket's end; the
    # buckets between them are empty (one kept at 0, as a run that left leaves it).
    durations = [1000, 1000, 1005, 5000, 5000, 9000]
    Run.objects.bulk_create(
        Run(workflow=workflow, prompt_mode="pinned", prompt_version=version, duration_ms=ms)
        for ms in durations
    )
    prompt_rollups_rebuild()
    PromptVersionDurationBucket.objects.create(
        prompt_version=version, bucket=duration_bucket(3000), runs=0
    )
    with django_assert_num_queries(2) as queries:
        assert version_medians(workflow) == {version.pk: timedelta(milliseconds=3002.5)}
    probe_sql = queries.captured_queries[1]["sql"]
    assert "LIMIT 2" in probe_sql and "OFFSET 2" in probe_sql  # the third of the 1 s bucket
    # Odd: rank 3 of 7, the first of the 5 s bucket.
    Run.objects.create(workflow=workflow, prompt_mode="pinned", prompt_version=version)
    Run.objects.filter(duration_ms=None).update(duration_ms=9500)
    prompt_rollups_rebuild()
    assert version_medians(workflow) == {version.pk: timedelta(milliseconds=5000)}


def test_a_probe_is_placed_from_its_bucket_and_the_runs_below_it():
    probe = _probe(7, bucket=4, below=2, total=6)  # ranks 2 and 3: the first in bucket 4
    assert (probe.low, probe.offset, probe.count) == (DURATION_EDGES_MS[3], 0, 2)
    probe = _probe(7, bucket=9, below=3, total=7)  # rank 3: the first above 3 runs
    assert (probe.low, probe.offset, probe.count) == (DURATION_EDGES_MS[8], 0, 1)
    assert _probe(7, bucket=0, below=0, total=1).low is None  # under a second: no bound
