"""The batch sending task: slices that hand over to the next one, and batches left half-sent by
a killed worker started again by the reconciler's pass."""

import uuid
from datetime import timedelta

import httpx
import pytest
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from launcher import tasks
from launcher.cyberdesk import use_transport
from launcher.models import Batch, Run, RunStatus, Submission
from launcher.services.batches import batch_create, batch_rows_check
from launcher.services.batches import send as send_module
from launcher.services.batches.chunks import CHUNK_LEASE, chunk_claim
from launcher.services.prompts import prompt_resolve_choice
from tests.fake_cyberdesk import FakeCyberdesk, serve
from tests.launch_api import NOW, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    # Sender threads have connections of their own, which cannot see this test's transaction;
    # the threaded path is tested in tests/services/test_batches.py.
    settings.BATCH_CONCURRENCY = 1
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


def planned_batch(catalog, rows=3) -> Batch:
    stored = prompt_resolve_choice(workflow=catalog.workflow, choice="stored")
    checked = batch_rows_check(
        workflow=catalog.workflow,
        prompts=[stored],
        text="customer_id,age\n" + "".join(f"c-{n:03d},40\n" for n in range(rows)),
    )
    return batch_create(
        user=None,
        workflow=catalog.workflow,
        models=[None],
        prompts=[stored],
        rows=checked.rows,
        token=uuid.uuid4(),
    )


def batch_tasks() -> list[DBTaskResult]:
    return list(DBTaskResult.objects.filter(task_path=tasks.batch_submit_task.module_path))


def test_the_task_sends_the_batch_and_schedules_nothing_more(catalog, api, clock):
    batch = planned_batch(catalog)

    result = tasks.batch_submit_task.call(batch.pk)

    assert result["accepted"] == 3 and result["remaining"] == 0
    assert batch_tasks() == []
    batch.refresh_from_db()
    assert batch.state == Batch.State.SUBMITTED


def test_a_throttled_slice_hands_over_to_a_task_after_the_retry_after(catalog, api, clock):
    batch = planned_batch(catalog)
    api.on_request = lambda request: httpx.Response(
        429, headers={"Retry-After": "90"}, json={"detail": "slow down"}
    )

    result = tasks.batch_submit_task.call(batch.pk)

    assert result["remaining"] == 3
    (follow_up,) = batch_tasks()
    assert follow_up.args_kwargs["args"] == [batch.pk]
    assert follow_up.run_after == NOW + timedelta(seconds=90)


def test_a_missing_batch_is_nothing_to_do(db):
    assert tasks.batch_submit_task.call(12345) == {}


def _task_row(batch, status, *, started_at=None):
    result = tasks.batch_submit_task.enqueue(batch.pk)
    DBTaskResult.objects.filter(id=result.id).update(status=status, started_at=started_at)


def test_a_batch_whose_worker_was_killed_is_started_again(catalog, clock):
    batch = planned_batch(catalog)
    _task_row(
        batch,
        TaskResultStatus.RUNNING,
        started_at=NOW - tasks.BATCH_STALLED_AFTER - timedelta(seconds=1),
    )

    assert tasks.batches_resume_stalled() == 1

    ready = [t for t in batch_tasks() if t.status == TaskResultStatus.READY]
    assert [t.args_kwargs["args"] for t in ready] == [[batch.pk]]


def test_a_batch_with_a_waiting_task_is_left_to_it(catalog, clock):
    batch = planned_batch(catalog)
    _task_row(batch, TaskResultStatus.READY)

    assert tasks.batches_resume_stalled() == 0
    assert len(batch_tasks()) == 1


def test_a_batch_whose_chunks_a_live_sender_holds_is_left_to_it(catalog, clock):
    batch = planned_batch(catalog)
    # A sender on another worker holds the batch's only chunk; its task row says RUNNING.
    _task_row(batch, TaskResultStatus.RUNNING, started_at=NOW - timedelta(minutes=5))
    assert chunk_claim(batch_id=batch.pk, holder="worker-a") is not None

    assert tasks.batches_resume_stalled() == 0

    clock.shift(CHUNK_LEASE + timedelta(seconds=1))  # that worker died: its lease ran out
    assert tasks.batches_resume_stalled() == 1
    ready = [t for t in batch_tasks() if t.status == TaskResultStatus.READY]
    assert [t.args_kwargs["args"] for t in ready] == [[batch.pk]]


def test_finished_and_cancelled_batches_are_not_started_again(catalog, clock):
    sent = planned_batch(catalog)
    Run.objects.filter(batch=sent).update(submission=Submission.ACCEPTED)
    cancelled = planned_batch(catalog)
    Batch.objects.filter(pk=cancelled.pk).update(state=Batch.State.CANCELLED)

    assert tasks.batches_resume_stalled() == 0


def test_each_reconciler_pass_looks_for_stalled_batches(catalog, api, clock):
    batch = planned_batch(catalog)  # its enqueue never happened (no commit in this test)

    tasks.reconcile_runs_task.call()

    paths = set(DBTaskResult.objects.values_list("task_path", flat=True))
    assert paths == {tasks.batch_submit_task.module_path, tasks.reconcile_runs_task.module_path}
    assert batch_tasks()[0].args_kwargs["args"] == [batch.pk]


# --- A worker killed with kill -9 ------------------------------------------------------------


class WorkerKilled(BaseException):
    """Stands for `kill -9`: nothing after it runs (no `finally`, no recording)."""


def creates(api):
    return [r for r in api.requests if r.method == "POST" and r.url.path.endswith("/v1/runs")]


def test_a_sender_has_its_stand_in_waiting_before_it_sends_anything(catalog, api, clock):
    batch = planned_batch(catalog)
    seen = []
    api.on_request = lambda request: seen.append([(t.status, t.run_after) for t in batch_tasks()])

    tasks.batch_submit_task.call(batch.pk)

    assert seen[0] == [(TaskResultStatus.READY, NOW + tasks.SENDER_STAND_IN_AFTER)]
    assert batch_tasks() == []  # sent in full: the stand-in is withdrawn


def test_a_backend_that_cannot_defer_sends_the_batch_without_a_stand_in(
    catalog, api, clock, settings
):
    # The immediate backend (browser tests, make screenshots) runs a task in the enqueueing
    # request and refuses `run_after`: nothing can wait there, so no stand-in is asked for.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    batch = planned_batch(catalog)

    result = tasks.batch_submit_task.call(batch.pk)

    assert result["accepted"] == 3 and result["remaining"] == 0
    batch.refresh_from_db()
    assert batch.state == Batch.State.SUBMITTED


def test_a_batch_whose_worker_is_killed_mid_chunk_resumes_within_30_s_no_run_sent_twice(
    catalog, api, clock, monkeypatch
):
    batch = planned_batch(catalog, rows=8)

    def die_on_the_fourth(request):
        if request.method == "POST" and len(api.runs) == 3:
            api._create(request)  # the API has it; the worker dies before hearing back
            raise WorkerKilled
        return None

    api.on_request = die_on_the_fourth
    with monkeypatch.context() as patched:
        patched.setattr(send_module, "runs_apply_upstream_many", _die)
        with pytest.raises(WorkerKilled):
            tasks.batch_submit_task.call(batch.pk)
    (stand_in,) = batch_tasks()
    assert stand_in.status == TaskResultStatus.READY
    resumes_at = stand_in.run_after - NOW
    assert resumes_at <= timedelta(seconds=30)
    assert resumes_at > CHUNK_LEASE  # by then the dead worker's lease has run out

    api.on_request = None
    clock.shift(resumes_at)  # the worker is started again; it runs the stand-in
    report = tasks.batch_submit_task.call(*stand_in.args_kwargs["args"])

    assert (report["accepted"], report["remaining"], report["taken_over"]) == (8, 0, 1)
    assert len(api.runs) == 8  # exactly the planned runs upstream
    keys = [r.headers["Idempotency-Key"] for r in creates(api)]
    assert len(set(keys)) == 8 and len(keys) == 12  # the first four again, same keys
    batch.refresh_from_db()
    assert batch.state == Batch.State.SUBMITTED


def _die(*args, **kwargs):
    raise WorkerKilled


def test_a_reconciler_pass_has_the_next_one_waiting_before_it_works(db, api, clock, monkeypatch):
    monkeypatch.setattr(tasks, "runs_reconcile", _die)  # killed in the middle of the pass

    with pytest.raises(WorkerKilled):
        tasks.reconcile_runs_task.call()

    following, spare = DBTaskResult.objects.filter(
        task_path=tasks.reconcile_runs_task.module_path
    ).order_by("run_after")
    assert {following.status, spare.status} == {TaskResultStatus.READY}
    assert following.run_after == NOW + tasks.RECONCILE_EVERY  # the 30 s rhythm holds

    monkeypatch.undo()
    clock.shift(tasks.RECONCILE_EVERY)  # the restarted worker runs it on time
    DBTaskResult.objects.filter(id=following.id).update(status=TaskResultStatus.RUNNING)
    tasks.reconcile_runs_task.call()

    waiting = DBTaskResult.objects.filter(
        task_path=tasks.reconcile_runs_task.module_path, status=TaskResultStatus.READY
    ).order_by("run_after")
    assert [t.run_after for t in waiting] == [
        NOW + 2 * tasks.RECONCILE_EVERY,
        NOW + 3 * tasks.RECONCILE_EVERY,
    ]


def test_a_worker_killed_before_its_pass_scheduled_anything_leaves_the_spare(db, api, clock):
    tasks.reconcile_schedule()  # a pass at +30 s, its spare at +60 s
    first, spare = DBTaskResult.objects.order_by("run_after")
    clock.shift(tasks.RECONCILE_EVERY)
    # A worker claims the first pass and is killed before the pass runs a line.
    DBTaskResult.objects.filter(id=first.id).update(status=TaskResultStatus.RUNNING)

    waiting = DBTaskResult.objects.filter(status=TaskResultStatus.READY)
    assert [t.run_after for t in waiting] == [NOW + 2 * tasks.RECONCILE_EVERY]
    assert spare.run_after - first.run_after == tasks.RECONCILE_EVERY  # the rhythm holds


def test_task_rows_a_dead_worker_left_running_are_marked_failed(catalog, api, clock):
    batch = planned_batch(catalog)
    _task_row(batch, TaskResultStatus.RUNNING, started_at=NOW - timedelta(minutes=11))
    _task_row(batch, TaskResultStatus.RUNNING, started_at=NOW - timedelta(minutes=1))

    result = tasks.reconcile_runs_task.call()

    assert result["tasks_abandoned"] == 1
    statuses = sorted(t.status for t in batch_tasks() if t.started_at is not None)
    assert statuses == [TaskResultStatus.FAILED, TaskResultStatus.RUNNING]


# --- Cancelling the rest, retrying the failed -----------------------------------------------------


@pytest.fixture
def launch_api(settings):
    settings.BATCH_CONCURRENCY = 1  # see `api` above
    with serve(settings) as fake:
        yield fake


def action_tasks(task) -> list[DBTaskResult]:
    return list(DBTaskResult.objects.filter(task_path=task.module_path).order_by("enqueued_at"))


def cancelling_batch(catalog, launch_api, runs=2, **fields) -> Batch:
    batch = Batch.objects.create(
        workflow=catalog.workflow, state=Batch.State.CANCELLED, cancel_requested_at=NOW, **fields
    )
    for _ in range(runs):
        make_run(catalog.workflow, api=launch_api, batch=batch)
    return batch


def test_the_cancel_task_cancels_and_schedules_nothing_more(catalog, launch_api, clock):
    batch = cancelling_batch(catalog, launch_api)

    result = tasks.batch_cancel_task.call(batch.pk)

    assert result["done"] == 2 and result["remaining"] == 0
    assert action_tasks(tasks.batch_cancel_task) == []
    batch.refresh_from_db()
    assert batch.cancel_requested_at is None


def test_a_throttled_cancel_hands_over_to_a_task_after_the_retry_after(catalog, settings, clock):
    settings.BATCH_CONCURRENCY = 1
    with serve(settings) as launch_api:
        batch = cancelling_batch(catalog, launch_api)
    throttled = httpx.MockTransport(
        lambda request: httpx.Response(429, headers={"Retry-After": "90"}, json={"detail": "no"})
    )
    with use_transport(throttled):
        result = tasks.batch_cancel_task.call(batch.pk, 7)

    assert result["remaining"] == 2
    (follow_up,) = action_tasks(tasks.batch_cancel_task)
    assert follow_up.args_kwargs["args"] == [batch.pk, 7]
    assert follow_up.run_after == NOW + timedelta(seconds=90)


def _stalled(task, *args):
    result = task.enqueue(*args)
    DBTaskResult.objects.filter(id=result.id).update(
        status=TaskResultStatus.RUNNING,
        started_at=NOW - tasks.BATCH_STALLED_AFTER - timedelta(seconds=1),
    )


def test_a_cancel_whose_worker_was_killed_is_started_again(catalog, launch_api, clock):
    batch = cancelling_batch(catalog, launch_api)
    Batch.objects.filter(pk=batch.pk).update(cancel_requested_at=NOW - timedelta(minutes=5))
    _stalled(tasks.batch_cancel_task, batch.pk, 3)

    assert tasks.batch_actions_resume_stalled() == 1

    ready = [
        t.args_kwargs["args"]
        for t in action_tasks(tasks.batch_cancel_task)
        if t.status == TaskResultStatus.READY
    ]
    assert ready == [[batch.pk, 3]]


def test_a_cancel_just_asked_or_with_a_live_task_is_left_alone(catalog, launch_api, clock):
    just_asked = cancelling_batch(catalog, launch_api, runs=1)
    working = cancelling_batch(catalog, launch_api, runs=1)
    Batch.objects.filter(pk=working.pk).update(cancel_requested_at=NOW - timedelta(minutes=5))
    tasks.batch_cancel_task.enqueue(working.pk)

    assert tasks.batch_actions_resume_stalled() == 0
    assert just_asked.pk  # its own enqueue happens when the request commits


def test_a_retry_whose_worker_was_killed_resumes_with_the_same_runs_and_attempts(
    catalog, launch_api, clock
):
    batch = Batch.objects.create(
        workflow=catalog.workflow, retry_requested_at=NOW - timedelta(minutes=5)
    )
    failed = make_run(catalog.workflow, api=launch_api, batch=batch, status=RunStatus.TASK_FAILED)
    launch_api.runs[str(failed.cyberdesk_id)]["status"] = "task_failed"
    args = [batch.pk, [[failed.pk, 1]], batch.retry_requested_at.isoformat(), None]
    _stalled(tasks.batch_retry_task, *args)

    assert tasks.batch_actions_resume_stalled() == 1
    (resumed,) = [
        t for t in action_tasks(tasks.batch_retry_task) if t.status == TaskResultStatus.READY
    ]
    assert resumed.args_kwargs["args"] == args

    tasks.batch_retry_task.call(*args)
    tasks.batch_retry_task.call(*args)  # the dead worker's task again, say: nothing more

    assert len(launch_api.calls("POST", "/retry")) == 1
    batch.refresh_from_db()
    assert batch.retry_requested_at is None


def test_a_retry_mark_without_any_task_is_cleared(catalog, clock):
    batch = Batch.objects.create(
        workflow=catalog.workflow, retry_requested_at=NOW - timedelta(minutes=5)
    )

    assert tasks.batch_actions_resume_stalled() == 0
    batch.refresh_from_db()
    assert batch.retry_requested_at is None
