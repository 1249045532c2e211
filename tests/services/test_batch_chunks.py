"""Batches shared by every worker: chunks claimed under a lease, answers recorded in bulk, and
a sender killed in the middle of a chunk taken over by another, with no run sent twice."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from launcher.models import Batch, BatchChunk, Run, Submission
from launcher.services.batches import batch_create, batch_submit
from launcher.services.batches import send as send_module
from launcher.services.batches.chunks import (
    CHUNK_LEASE,
    CHUNK_SIZE,
    chunk_claim,
    chunk_renew,
    chunks_ensure,
)
from launcher.services.batches.rows import BatchRow
from launcher.services.prompts import prompt_resolve_choice
from tests.fake_cyberdesk import FakeCyberdesk
from tests.launch_api import Catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


def planned(catalog, runs: int) -> Batch:
    stored = prompt_resolve_choice(workflow=catalog.workflow, choice="stored")
    rows = [
        BatchRow(number=n, line=n + 1, values={"customer_id": f"c-{n:04d}", "age": 40})
        for n in range(1, runs + 1)
    ]
    return batch_create(
        user=None,
        workflow=catalog.workflow,
        models=[None],
        prompts=[stored],
        rows=rows,
        token=uuid.uuid4(),
    )


def creates(api):
    return [r for r in api.requests if r.method == "POST" and r.url.path.endswith("/v1/runs")]


class WorkerKilled(BaseException):
    """Stands for `kill -9`: nothing after it runs, not even the recording of answers."""


def test_the_plan_cuts_the_batch_into_chunks_of_consecutive_runs(catalog, settings):
    settings.BATCH_MAX_RUNS = 200
    batch = planned(catalog, 2 * CHUNK_SIZE + 7)

    chunks = list(BatchChunk.objects.filter(batch=batch).order_by("number"))

    assert [c.size for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE, 7]
    ids = list(Run.objects.filter(batch=batch).order_by("pk").values_list("pk", flat=True))
    assert [(c.first_run_id, c.last_run_id) for c in chunks] == [
        (ids[0], ids[CHUNK_SIZE - 1]),
        (ids[CHUNK_SIZE], ids[2 * CHUNK_SIZE - 1]),
        (ids[2 * CHUNK_SIZE], ids[-1]),
    ]
    assert {c.done_at for c in chunks} == {None}


def test_a_batch_planned_before_chunks_is_cut_when_it_is_sent(catalog):
    batch = planned(catalog, 3)
    BatchChunk.objects.filter(batch=batch).delete()

    chunks_ensure(batch=batch)

    (chunk,) = BatchChunk.objects.filter(batch=batch)
    assert chunk.size == 3


def test_each_claim_takes_the_next_free_chunk_and_a_lapsed_lease_is_taken_over(
    catalog, settings, clock
):
    settings.BATCH_MAX_RUNS = 200
    batch = planned(catalog, CHUNK_SIZE + 1)

    first = chunk_claim(batch_id=batch.pk, holder="a")
    second = chunk_claim(batch_id=batch.pk, holder="b")

    assert (first.number, second.number) == (0, 1)
    assert chunk_claim(batch_id=batch.pk, holder="c") is None  # both held
    clock.shift(CHUNK_LEASE - timedelta(seconds=1))
    assert chunk_renew(first, holder="a")  # a is alive and says so
    clock.shift(timedelta(seconds=2))  # b's lease ran out; a's was renewed
    taken = chunk_claim(batch_id=batch.pk, holder="c")
    assert (taken.number, taken.claims) == (1, 2)
    assert not chunk_renew(second, holder="b")  # b, frozen, learns it lost the chunk


def test_answers_are_recorded_in_bulk_so_queries_do_not_grow_with_runs(
    catalog, api, settings, django_assert_max_num_queries
):
    settings.BATCH_MAX_RUNS = 200
    small = planned(catalog, 5)
    large = planned(catalog, CHUNK_SIZE)
    counts = []
    for batch in (small, large):
        with django_assert_max_num_queries(100) as captured:
            report = batch_submit(batch=batch, concurrency=1)
        assert report.accepted == batch.runs.count()
        counts.append(len(captured.captured_queries))

    assert counts[0] == counts[1]  # 5 runs or 50: the same statements per chunk
    assert counts[1] <= 20  # per chunk: claim, read, count attempts, lock + bulk write, close
    assert set(large.runs.values_list("submission", flat=True)) == {Submission.ACCEPTED}
    assert large.runs.filter(cyberdesk_id__isnull=True).count() == 0


def test_a_sender_killed_mid_chunk_is_taken_over_once_its_lease_runs_out(
    catalog, api, settings, clock, monkeypatch
):
    """Worker A dies with `kill -9` after the API created 6 runs of its chunk: none of their
    answers was recorded. Worker B sends the other chunk at once, waits out A's lease, then
    takes A's chunk over: the 6 go out again with the same keys and the API replays them."""
    settings.BATCH_MAX_RUNS = 200
    batch = planned(catalog, CHUNK_SIZE + 10)  # chunks of 50 and 10
    sent = {"count": 0}

    def die_after_six(request):
        if request.method != "POST":
            return None
        sent["count"] += 1
        if sent["count"] == 6:
            api._create(request)  # the API has the 6th run; its answer dies with worker A
            raise WorkerKilled
        return None

    def no_recording(answers, **kwargs):
        raise WorkerKilled  # kill -9 runs no `finally`: nothing A heard is written

    api.on_request = die_after_six
    with monkeypatch.context() as patched:
        patched.setattr(send_module, "runs_apply_upstream_many", no_recording)
        with pytest.raises(WorkerKilled):
            batch_submit(batch=batch, concurrency=1, holder="worker-a")
    assert len(api.runs) == 6
    assert batch.runs.filter(submission=Submission.QUEUED).count() == CHUNK_SIZE + 10

    api.on_request = None
    first = batch_submit(batch=batch, concurrency=1, holder="worker-b")
    assert (first.accepted, first.remaining) == (10, CHUNK_SIZE)  # A's chunk is still held
    assert first.resume_in == pytest.approx(CHUNK_LEASE.total_seconds() + 1)

    clock.shift(CHUNK_LEASE + timedelta(seconds=1))
    second = batch_submit(batch=batch, concurrency=1, holder="worker-b")

    assert (second.accepted, second.remaining, second.taken_over) == (CHUNK_SIZE, 0, 1)
    runs = list(batch.runs.all())
    assert {r.submission for r in runs} == {Submission.ACCEPTED}
    assert len(api.runs) == CHUNK_SIZE + 10  # exactly the planned runs upstream
    assert len({r.cyberdesk_id for r in runs}) == CHUNK_SIZE + 10
    keys = [r.headers["Idempotency-Key"] for r in creates(api)]
    assert len(set(keys)) == CHUNK_SIZE + 10 == len(keys) - 6  # the 6 again, same keys
    batch.refresh_from_db()
    assert batch.state == Batch.State.SUBMITTED
    assert not BatchChunk.objects.filter(batch=batch, done_at__isnull=True).exists()


def test_a_sender_that_lost_its_lease_stops_and_leaves_the_chunk_to_the_new_holder(
    catalog, api, settings, clock
):
    settings.BATCH_MAX_RUNS = 200
    batch = planned(catalog, 20)

    def frozen_then_taken_over(request):
        if request.method == "POST" and len(api.runs) == 5:
            # This sender froze past its lease; another took the chunk in the meantime.
            clock.shift(CHUNK_LEASE + timedelta(seconds=1))
            BatchChunk.objects.filter(batch=batch).update(
                holder="worker-b", lease_until=timezone.now() + CHUNK_LEASE
            )
        return None

    api.on_request = frozen_then_taken_over
    ticks = iter(range(0, 10_000, 6))  # each look at the clock: 6 s later (renewal is due)

    report = batch_submit(
        batch=batch, concurrency=1, holder="worker-a", clock=lambda: next(ticks), sleep=lambda s: 0
    )

    assert report.accepted < 20 and report.remaining == 20 - report.accepted
    chunk = BatchChunk.objects.get(batch=batch)
    assert (chunk.holder, chunk.done_at) == ("worker-b", None)  # untouched by the old holder


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="concurrent claims need PostgreSQL's row locks"
)
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_the_same_instant_get_one_chunk_each(settings):
    settings.BATCH_MAX_RUNS = 200
    batch = planned(Catalog(), 2 * CHUNK_SIZE)
    start = threading.Barrier(2)
    claimed = {}

    def worker(name):
        try:
            start.wait(timeout=5)
            chunk = chunk_claim(batch_id=batch.pk, holder=name)
            claimed[name] = chunk.number if chunk else None
            start.wait(timeout=5)  # both have claimed once; now neither finds a free chunk
            claimed[f"{name} again"] = chunk_claim(batch_id=batch.pk, holder=name)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted([claimed["a"], claimed["b"]]) == [0, 1]
    assert claimed["a again"] is None and claimed["b again"] is None
    holders = dict(BatchChunk.objects.filter(batch=batch).values_list("number", "holder"))
    assert holders == {claimed["a"]: "a", claimed["b"]: "b"}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="senders on several threads need PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_two_workers_send_one_batch_together_each_run_once(api, settings):
    settings.BATCH_MAX_RUNS = 500
    settings.BATCH_CONCURRENCY = 4
    batch = planned(Catalog(), 6 * CHUNK_SIZE)
    reports = {}

    def worker(name):
        try:
            reports[name] = batch_submit(batch=batch, holder=name)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert reports["a"].accepted + reports["b"].accepted == 6 * CHUNK_SIZE
    assert reports["a"].chunks + reports["b"].chunks == 6
    keys = [r.headers["Idempotency-Key"] for r in creates(api)]
    assert len(keys) == len(set(keys)) == 6 * CHUNK_SIZE  # nothing sent twice
    assert set(batch.runs.values_list("submission", flat=True)) == {Submission.ACCEPTED}


def test_planning_takes_the_same_statements_for_ten_runs_or_five_hundred(
    catalog, settings, django_assert_max_num_queries
):
    settings.BATCH_MAX_RUNS = 1000
    counts = []
    for runs in (10, 500):
        with django_assert_max_num_queries(30) as captured:
            batch = planned(catalog, runs)
        counts.append(len(captured.captured_queries))
        assert batch.runs.count() == runs
        assert sum(BatchChunk.objects.filter(batch=batch).values_list("size", flat=True)) == runs

    assert counts[0] == counts[1]  # the runs in one statement, the chunks in one more
    run = batch.runs.order_by("pk").last()
    assert (run.batch_row, run.input_values) == (500, {"customer_id": "c-0500", "age": 40})
    assert (run.submission, run.status, run.prompt_mode) == ("queued", "pending", "stored")
    assert run.created_at is not None and run.cyberdesk_id is None
