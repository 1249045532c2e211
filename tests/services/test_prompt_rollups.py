"""The prompts page's kept counters (`PromptVersionRollup`) and duration buckets
(`PromptVersionDurationBucket`) move with the runs and always equal what
`prompt_rollups_rebuild` recounts from the runs: after launches, answers (one run and a chunk's
many), costs and retries."""

import random
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from launcher.cyberdesk import types
from launcher.models import (
    PromptVersionDurationBucket,
    PromptVersionRollup,
    Run,
    RunStatus,
    Submission,
    Workflow,
)
from launcher.services import run_sync
from launcher.services.prompt_rollups import (
    DURATION_EDGES_MS,
    duration_bucket,
    duration_bucket_sql,
    prompt_rollups_count_inserted,
    prompt_rollups_count_launched,
    prompt_rollups_rebuild,
)
from launcher.services.prompts import prompt_version_create
from tests.fake_cyberdesk import FakeCyberdesk, upstream_run
from tests.launch_api import NOW

pytestmark = pytest.mark.django_db

COUNTERS = (
    "runs",
    "finished",
    "succeeded",
    "cost_micro_usd",
    "cost_runs",
    "cached_steps",
    "agentic_steps",
    "timed",
    "first_used",
    "last_used",
)


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


@pytest.fixture
def workflow():
    return Workflow.objects.create(id=uuid.uuid4(), name="Invoices", main_prompt="two")


def kept() -> dict:
    """Each version's counters, and its non-empty duration buckets (a bucket its runs all
    left keeps a row at 0; the recount has none)."""
    buckets: dict = {}
    for row in PromptVersionDurationBucket.objects.exclude(runs=0).order_by("bucket"):
        buckets.setdefault(row.prompt_version_id, []).append((row.bucket, row.runs))
    return {
        row.prompt_version_id: (
            *(getattr(row, name) for name in COUNTERS),
            buckets.get(row.prompt_version_id, []),
        )
        for row in PromptVersionRollup.objects.all()
    }


def recounted() -> dict:
    prompt_rollups_rebuild()
    return kept()


def launch(workflow, version) -> Run:
    return Run.objects.create(
        workflow=workflow,
        prompt_mode="pinned",
        prompt_version=version,
        cyberdesk_id=uuid.uuid4(),
        submission=Submission.ACCEPTED,
        status=RunStatus.PENDING,
    )


def answer(run, status, *, steps=(0, 0), minutes=2, seconds=None):
    took = timedelta(minutes=minutes) if seconds is None else timedelta(seconds=seconds)
    return types.Run.from_api(
        upstream_run(
            run_id=run.cyberdesk_id,
            status=status,
            started_at=(NOW - took).isoformat(),
            ended_at=NOW.isoformat() if status in ("success", "task_failed", "error") else None,
            usage_metadata={"total_cached_steps": steps[0], "total_agentic_steps": steps[1]},
        )
    )


def test_a_launch_a_finish_a_cost_and_a_retry_move_the_counters(workflow, api, clock):
    version = prompt_version_create(workflow=workflow, text="one")
    run = launch(workflow, version)
    row = PromptVersionRollup.objects.get(prompt_version=version)
    assert (row.runs, row.finished, row.first_used, row.last_used) == (1, 0, NOW, NOW)

    run_sync.run_apply_upstream(run, answer(run, "success", steps=(3, 1)))
    api.costs[str(run.cyberdesk_id)] = 0.25
    run_sync.run_cost_fetch(run)
    row.refresh_from_db()
    assert (row.finished, row.succeeded, row.cost_micro_usd, row.cost_runs) == (1, 1, 250000, 1)
    assert (row.cached_steps, row.agentic_steps, row.timed) == (3, 1, 1)
    two_minutes = duration_bucket(120_000)
    assert list(PromptVersionDurationBucket.objects.values_list("bucket", "runs")) == [
        (two_minutes, 1)
    ]

    # A retry: the run counts once, as its latest attempt; the first one's outcome leaves.
    run_sync.run_apply_upstream(run, answer(run, "scheduling"), restart=True)
    row.refresh_from_db()
    assert (row.runs, row.finished, row.succeeded, row.cost_runs, row.timed) == (1, 0, 0, 0, 0)
    assert list(PromptVersionDurationBucket.objects.values_list("runs", flat=True)) == [0]
    run_sync.run_apply_upstream(run, answer(run, "task_failed", steps=(0, 5), minutes=30))
    row.refresh_from_db()
    assert (row.runs, row.finished, row.succeeded, row.agentic_steps) == (1, 1, 0, 5)
    # The new attempt's 30 minutes, in another bucket than the first attempt's 2.
    assert dict(PromptVersionDurationBucket.objects.values_list("bucket", "runs")) == {
        two_minutes: 0,
        duration_bucket(1_800_000): 1,
    }
    assert kept() == recounted()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_after_a_mix_of_launches_finishes_and_retries_they_equal_the_recount(
    workflow, api, clock, seed
):
    rng = random.Random(seed)
    versions = [prompt_version_create(workflow=workflow, text=f"text {n}") for n in range(3)]
    runs: list[Run] = []

    def took() -> float:
        # Durations across many buckets, some on an edge (whole milliseconds) or under 1 s.
        if rng.random() < 0.3:
            return rng.choice(DURATION_EDGES_MS) / 1000
        return rng.choice((rng.uniform(0, 1), rng.uniform(1, 30), rng.uniform(30, 5000)))

    for _ in range(80):
        move = rng.random()
        if move < 0.3 or not runs:
            clock.shift(timedelta(minutes=rng.randint(1, 90)))
            runs.append(launch(workflow, rng.choice(versions)))
            continue
        run = rng.choice(runs)
        run.refresh_from_db()
        steps = (rng.randint(0, 9), rng.randint(0, 9))
        if move < 0.45:
            run_sync.run_apply_upstream(run, answer(run, "running"))
        elif move < 0.75:
            status = rng.choice(["success", "task_failed", "error", "cancelled"])
            run_sync.run_apply_upstream(run, answer(run, status, steps=steps, seconds=took()))
        elif move < 0.85:
            # A chunk's answers: the bulk path.
            chunk = rng.sample(runs, min(len(runs), 4))
            for member in chunk:
                member.refresh_from_db()
            run_sync.runs_apply_upstream_many(
                [
                    (member, answer(member, "success", steps=steps, seconds=took()))
                    for member in chunk
                ]
            )
        elif move < 0.92 and run.is_finished:
            api.costs[str(run.cyberdesk_id)] = rng.randint(1, 10_000) / 1_000_000
            run_sync.run_cost_fetch(run)
        elif run.is_finished:
            run_sync.run_apply_upstream(run, answer(run, "scheduling"), restart=True)
    counters = kept()
    assert counters == recounted()
    assert sum(values[0] for values in counters.values()) == len(runs)
    # Each version's buckets hold exactly its timed runs.
    timed = COUNTERS.index("timed")
    for values in counters.values():
        assert sum(runs for _, runs in values[-1]) == values[timed]
    assert len({bucket for values in counters.values() for bucket, _ in values[-1]}) > 3


def test_a_launch_that_already_carries_a_duration_is_counted_in_its_bucket(workflow, clock):
    version = prompt_version_create(workflow=workflow, text="one")
    run = Run(
        workflow=workflow,
        prompt_mode="pinned",
        prompt_version=version,
        status=RunStatus.SUCCESS,
        started_at=NOW - timedelta(seconds=5),
        ended_at=NOW,
    )
    run.save()  # one insert: Run.save() counts it
    assert list(PromptVersionDurationBucket.objects.values_list("bucket", "runs")) == [
        (duration_bucket(5000), 1)
    ]
    twin = Run.objects.get(pk=run.pk)
    twin.pk = None
    twin.idempotency_key = uuid.uuid4()
    Run.objects.bulk_create([twin])
    prompt_rollups_count_launched([twin])  # an insert that skipped save(): the same hook
    assert list(PromptVersionDurationBucket.objects.values_list("bucket", "runs")) == [
        (duration_bucket(5000), 2)
    ]
    assert kept() == recounted()


def test_sql_and_python_put_every_duration_in_the_same_bucket(workflow):
    version = prompt_version_create(workflow=workflow, text="one")
    durations = [-5, 0, 999, 10**12]
    for edge in DURATION_EDGES_MS:
        durations += [edge - 1, edge, edge + 1]
    Run.objects.bulk_create(
        Run(workflow=workflow, prompt_mode="pinned", prompt_version=version, duration_ms=ms)
        for ms in durations
    )
    in_sql = dict(
        Run.objects.annotate(bucket=duration_bucket_sql()).values_list("duration_ms", "bucket")
    )
    assert in_sql == {ms: duration_bucket(ms) for ms in durations}
    # Bucket 0 is under a second, 1 starts at 1 s, the last holds a day and more.
    assert (duration_bucket(999), duration_bucket(1000), duration_bucket(1009)) == (0, 1, 1)
    assert duration_bucket(10**12) == len(DURATION_EDGES_MS) == 1149
    assert DURATION_EDGES_MS[-2] < 86_400_000 <= DURATION_EDGES_MS[-1]


def test_a_bulk_insert_counts_its_runs_as_launched(workflow, clock):
    version = prompt_version_create(workflow=workflow, text="one")
    launch(workflow, version)
    clock.shift(timedelta(hours=1))
    Run.objects.bulk_create(
        Run(workflow=workflow, prompt_mode="pinned", prompt_version=version, status="pending")
        for _ in range(5)
    )
    prompt_rollups_count_inserted(Run.objects.filter(created_at__gt=NOW))
    row = PromptVersionRollup.objects.get(prompt_version=version)
    assert (row.runs, row.first_used, row.last_used) == (6, NOW, NOW + timedelta(hours=1))
    assert kept() == recounted()


def test_the_command_recounts_counters_that_drifted(workflow):
    version = prompt_version_create(workflow=workflow, text="one")
    run = launch(workflow, version)
    Run.objects.filter(pk=run.pk).update(duration_ms=4000)  # skips the hooks: drift
    PromptVersionRollup.objects.update(runs=99, finished=5)
    PromptVersionDurationBucket.objects.create(prompt_version=version, bucket=50, runs=7)
    out = StringIO()
    call_command("prompt_rollups_rebuild", stdout=out)
    row = PromptVersionRollup.objects.get(prompt_version=version)
    assert (row.runs, row.finished, row.timed) == (1, 0, 1)
    assert list(PromptVersionDurationBucket.objects.values_list("bucket", "runs")) == [
        (duration_bucket(4000), 1)
    ]
    assert "Recounted 1 prompt versions" in out.getvalue()
