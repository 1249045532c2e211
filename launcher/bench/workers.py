"""Figures 5c–5f: batches sent by real `db_worker` processes, planning a 10,000-run batch, and
recovery after `kill -9` (issue 13, targets 5–7).

Unlike figure 5a/5b (the sender called in the harness process), these start `manage.py
db_worker` processes on the bench database — the processes production runs — and watch the
database while they work. The simulated 50 ms API round trip (`upstream-latency-ms`) is on for
the sending figures, as the real API is a network hop away.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from launcher.bench.figures import (
    LAUNCH_WORKFLOW_NAME,
    SIMULATED_LATENCY_MS,
    UPSTREAM_LATENCY_FILE,
    Bench,
    Row,
    _verdict,
)
from launcher.bench.requestlog import read_log
from launcher.cyberdesk import types
from launcher.models import Batch, BatchChunk, PromptMode, Run, Submission, Workflow
from launcher.selectors import models_offered
from launcher.services.batches import BatchRow, batch_create
from launcher.services.batches.chunks import CHUNK_LEASE
from launcher.services.catalog import models_sync
from launcher.services.prompts import prompt_resolve
from launcher.services.workflows import workflows_sync_if_stale
from launcher.tasks import SENDER_STAND_IN_AFTER, reconcile_runs_task, reconcile_schedule
from launcher.webhooks import webhook_event_record

WORKERS_BATCH_RUNS = 2000
PLANNING_RUNS = 10_000
PARKED_QUEUE = "bench-parked"  # tasks of earlier phases, kept out of the workers' way


class Workers:
    """`manage.py db_worker` processes on the bench database, each logging to its own file."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        log = open(self.directory / f"db_worker-{name}.log", "ab")  # noqa: SIM115 - the child owns it
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "db_worker"]
        command += ["--no-startup-delay", "--interval", "0.05", "--worker-id", name]
        self.processes[name] = subprocess.Popen(  # noqa: S603
            command, env=dict(os.environ), cwd=settings.BASE_DIR, stdout=log, stderr=log
        )

    def kill(self, name: str) -> None:
        """`kill -9`: the worker gets no chance to finish anything."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGKILL)
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes.clear()


@contextmanager
def _workers(bench: Bench):
    """Worker processes for one figure; other phases' waiting tasks parked meanwhile."""
    parked = list(
        DBTaskResult.objects.filter(status=TaskResultStatus.READY).values_list("id", flat=True)
    )
    DBTaskResult.objects.filter(id__in=parked).update(queue_name=PARKED_QUEUE)
    workers = Workers(bench.directory)
    try:
        yield workers
    finally:
        workers.stop_all()
        DBTaskResult.objects.filter(id__in=parked, status=TaskResultStatus.READY).update(
            queue_name="default"
        )


@contextmanager
def _latency(bench: Bench):
    latency_file = bench.directory / UPSTREAM_LATENCY_FILE
    latency_file.write_text(str(SIMULATED_LATENCY_MS))
    try:
        yield
    finally:
        latency_file.unlink()


def _plan_scene() -> None:
    """The workflow mirror and ten offered models (figure 5a syncs them too; these figures may
    run alone, with --only)."""
    workflows_sync_if_stale()
    if models_offered().count() < 10:
        models_sync()


def _plan(bench: Bench, runs: int, label: str) -> Batch:
    """A batch of `runs` runs: rows × the offered models, the stored prompt."""
    _plan_scene()
    workflow = Workflow.objects.get(name=LAUNCH_WORKFLOW_NAME)
    models = list(models_offered()[:10])
    rows_needed = -(-runs // len(models))
    rows = [
        BatchRow(
            number=number,
            line=None,
            values={
                "invoice_filename": f"INV-{label}-{number:05d}.pdf",
                "invoice_total": 100.0 + number,
                "line_item_count": number % 50 + 1,
                "include_tax": number % 2 == 0,
            },
        )
        for number in range(1, rows_needed + 1)
    ]
    previous = settings.BATCH_MAX_RUNS
    settings.BATCH_MAX_RUNS = max(previous, runs)
    try:
        return batch_create(
            user=get_user_model().objects.get(username="bench-operator"),
            workflow=workflow,
            models=models,
            prompts=[prompt_resolve(workflow=workflow, mode=PromptMode.STORED)],
            rows=rows,
            token=uuid.uuid4(),
            name=f"bench {label}",
        )
    finally:
        settings.BATCH_MAX_RUNS = previous


def _sent(batch: Batch) -> int:
    return Run.objects.filter(batch=batch).exclude(submission=Submission.QUEUED).count()


def _wait_sent(batch: Batch, *, timeout: float, say, at_least: int | None = None) -> float:
    """Poll until the batch is sent (or `at_least` runs are); return the monotonic time."""
    deadline = time.monotonic() + timeout
    target = at_least if at_least is not None else Run.objects.filter(batch=batch).count()
    last_said = 0.0
    while True:
        sent = _sent(batch)
        if sent >= target:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"Batch {batch.pk}: {sent}/{target} runs sent after {timeout} s")
        if time.monotonic() - last_said > 5:
            say(f"batch {batch.pk}: {sent}/{target} sent")
            last_said = time.monotonic()
        time.sleep(0.05)


def _send_with_workers(bench: Bench, count: int) -> tuple[float, Batch]:
    with _workers(bench) as workers:
        for number in range(count):
            workers.start(f"bench-{count}w-{number}")
        time.sleep(3)  # the workers import Django and start polling (not counted)
        batch = _plan(bench, WORKERS_BATCH_RUNS, f"{count}-workers")
        started = time.monotonic()
        done = _wait_sent(batch, timeout=300, say=bench.say)
    bench.batches[f"{count}-workers"] = batch.pk
    accepted = batch.runs.filter(submission=Submission.ACCEPTED).count()
    if accepted != WORKERS_BATCH_RUNS:
        raise RuntimeError(f"{count} worker(s): {accepted}/{WORKERS_BATCH_RUNS} accepted")
    return done - started, batch


def figure_batch_workers(bench: Bench) -> None:
    """5c: one db_worker, then two, each sending a fresh 2,000-run batch at a 50 ms round trip."""
    with _latency(bench):
        bench.say(f"sending {WORKERS_BATCH_RUNS} runs with 1 db_worker (50 ms round trip)")
        one_s, _ = _send_with_workers(bench, 1)
        bench.say(f"sending {WORKERS_BATCH_RUNS} runs with 2 db_workers (50 ms round trip)")
        two_s, batch = _send_with_workers(bench, 2)
    holders = set(BatchChunk.objects.filter(batch=batch).values_list("holder", flat=True))
    speedup = one_s / two_s
    n = WORKERS_BATCH_RUNS
    bench.rows.append(
        Row(
            figure=f"5c. Batch of {n} runs, API round trip {SIMULATED_LATENCY_MS} ms, sent by 2 "
            f"db_worker processes (concurrency {settings.BATCH_CONCURRENCY} each)",
            measured=f"2 workers: {two_s:.1f} s ({n / two_s:.0f} runs/s, chunks held by "
            f"{len(holders)} senders); speed-up {speedup:.2f}×",
            reference=f"1 worker: {one_s:.1f} s ({n / one_s:.0f} runs/s)",
            target="≥ 1.8×",
            verdict=_verdict(speedup >= 1.8),
        )
    )


def figure_batch_planning(bench: Bench) -> None:
    """5d: planning a 10,000-run batch (the request's part: rows × models stored, chunks cut);
    its API calls counted in the request log (none), sending not started (no worker runs)."""
    _plan_scene()  # the mirror and the catalog, before the clock starts
    since = time.time()
    with _queries_timed() as longest:
        started = time.perf_counter()
        batch = _plan(bench, PLANNING_RUNS, "planning")
        took = time.perf_counter() - started
    calls = [r for r in read_log(bench.directory, since=since) if r.kind == "upstream"]
    chunks = BatchChunk.objects.filter(batch=batch).count()
    # Nothing may send it later: its runs are marked rejected, its tasks dropped.
    DBTaskResult.objects.filter(
        status=TaskResultStatus.READY, args_kwargs__args__0=batch.pk
    ).delete()
    Batch.objects.filter(pk=batch.pk).update(state=Batch.State.CANCELLED)
    bench.rows.append(
        Row(
            figure=f"5d. Planning a {PLANNING_RUNS}-run batch (batch_create: runs + chunks)",
            measured=f"{took:.2f} s ({chunks} chunks); longest statement {longest[0] * 1000:.0f} "
            f"ms; {len(calls)} API calls while planning",
            reference="one transaction, no API call inside it",
            target="< 2 s",
            verdict=_verdict(took < 2 and not calls),
        )
    )


@contextmanager
def _queries_timed():
    """The longest single statement run inside the block (seconds), as a one-item list."""
    longest = [0.0]

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            longest[0] = max(longest[0], time.perf_counter() - started)

    with connection.execute_wrapper(timed):
        yield longest


def figure_recovery_batch(bench: Bench) -> None:
    """5e: the only db_worker is killed with `kill -9` a third of the way through a batch and
    started again at once: how long until runs go out again, until the dead worker's chunk is
    taken over, and whether the API ends with exactly the planned runs."""
    with _latency(bench), _workers(bench) as workers:
        workers.start("bench-victim")
        time.sleep(3)
        batch = _plan(bench, WORKERS_BATCH_RUNS, "recovery")
        _wait_sent(batch, timeout=120, say=bench.say, at_least=WORKERS_BATCH_RUNS // 3)
        workers.kill("bench-victim")
        killed_at = time.monotonic()
        sent_at_kill = _sent(batch)
        bench.say(f"killed the worker with {sent_at_kill} runs sent; starting another")
        workers.start("bench-successor")
        resumed_at = _wait_sent(batch, timeout=60, say=bench.say, at_least=sent_at_kill + 1)
        taken_over_at = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (
                taken_over_at is None
                and BatchChunk.objects.filter(batch=batch, claims__gt=1).exists()
            ):
                taken_over_at = time.monotonic()
            if _sent(batch) >= WORKERS_BATCH_RUNS and taken_over_at is not None:
                break
            time.sleep(0.05)
        done_at = _wait_sent(batch, timeout=120, say=bench.say)
    runs = batch.runs.filter(submission=Submission.ACCEPTED)
    distinct_upstream = runs.values("cyberdesk_id").distinct().count()
    keys = {str(key) for key in batch.runs.values_list("idempotency_key", flat=True)}
    sends = [r for r in read_log(bench.directory) if r.idempotency_key in keys]
    resent = len(sends) - len({r.idempotency_key for r in sends})
    resume_s = resumed_at - killed_at
    takeover_s = (taken_over_at or done_at) - killed_at
    ok = max(resume_s, takeover_s) <= 30 and distinct_upstream == runs.count() == WORKERS_BATCH_RUNS
    bench.rows.append(
        Row(
            figure=f"5e. kill -9 of the only db_worker mid-batch ({WORKERS_BATCH_RUNS} runs, "
            f"{SIMULATED_LATENCY_MS} ms), another started at once",
            measured=f"sending again after {resume_s:.1f} s; dead chunk taken over after "
            f"{takeover_s:.1f} s; done {done_at - killed_at:.1f} s after the kill; "
            f"{distinct_upstream} upstream runs for {WORKERS_BATCH_RUNS} planned "
            f"({resent} sent again with their keys)",
            reference=f"lease {CHUNK_LEASE.total_seconds():.0f} s, stand-in after "
            f"{SENDER_STAND_IN_AFTER.total_seconds():.0f} s",
            target="resumes within 30 s; no duplicate run",
            verdict=_verdict(ok),
        )
    )


def figure_recovery_reconciler(bench: Bench) -> None:
    """5f: the worker is killed with `kill -9` while a reconciler pass runs and started again:
    when does the next pass start, counted from the start of the killed one."""
    path = reconcile_runs_task.module_path
    with _latency(bench), _workers(bench) as workers:
        DBTaskResult.objects.filter(task_path=path, status=TaskResultStatus.READY).delete()
        reconcile_schedule(delay=timedelta(0))
        workers.start("bench-reconciler")
        killed = None
        deadline = time.monotonic() + 60
        while killed is None and time.monotonic() < deadline:
            running = (
                DBTaskResult.objects.filter(task_path=path, status=TaskResultStatus.RUNNING)
                .order_by("-started_at")
                .first()
            )
            if running is not None:
                workers.kill("bench-reconciler")
                killed = running
            time.sleep(0.01)
        if killed is None:
            raise RuntimeError("No reconciler pass started within 60 s")
        killed.refresh_from_db()
        mid_pass = killed.status == TaskResultStatus.RUNNING
        workers.start("bench-reconciler-2")
        bench.say("killed the worker during a reconciler pass; waiting for the next pass")
        following = None
        deadline = time.monotonic() + 90
        while following is None and time.monotonic() < deadline:
            following = (
                DBTaskResult.objects.filter(task_path=path, started_at__gt=killed.started_at)
                .exclude(id=killed.id)
                .order_by("started_at")
                .first()
            )
            time.sleep(0.1)
        if following is None:
            raise RuntimeError("No reconciler pass after the kill within 90 s")
        time.sleep(1)
        scheduled = (
            DBTaskResult.objects.filter(task_path=path, status=TaskResultStatus.READY)
            .values_list("run_after", flat=True)
            .first()
        )
    gap = (following.started_at - killed.started_at).total_seconds()
    rhythm = (scheduled - following.started_at).total_seconds() if scheduled else None
    bench.rows.append(
        Row(
            figure="5f. kill -9 of the db_worker during a reconciler pass, started again",
            measured=f"next pass {gap:.1f} s after the killed one started "
            f"({'killed mid-pass' if mid_pass else 'the pass ended before the kill'}); "
            f"the one after scheduled {rhythm:.0f} s later"
            if rhythm is not None
            else f"next pass {gap:.1f} s after the killed one started; none scheduled after",
            reference="the reconciler's rhythm: 30 s",
            target="next pass within 30 s (+ 1 s worker poll)",
            verdict=_verdict(gap <= 31 and rhythm is not None and rhythm <= 31),
        )
    )


WEBHOOK_EVENTS = 1000


def figure_webhook_rate(bench: Bench) -> None:
    """5g: how many `run_complete` webhooks the database absorbs from one process — the
    database part of the webhook (`webhook_event_record`: the event row, the run locked and
    updated, the finalize task enqueued, one transaction), for runs of the 5c batch. Signature
    checks and HTTP are left out: they scale with gunicorn processes, the database does not."""
    batch = Batch.objects.get(pk=bench.batches["2-workers"])
    runs = list(
        batch.runs.filter(cyberdesk_id__isnull=False).values_list("cyberdesk_id", "workflow_id")
    )[:WEBHOOK_EVENTS]
    if not runs:
        raise RuntimeError("No sent runs to finish")
    finished_at = timezone.now()
    events = [
        types.Run.from_api(
            {
                "id": str(cyberdesk_id),
                "workflow_id": str(workflow_id),
                "status": "success",
                "created_at": finished_at.isoformat(),
                "started_at": finished_at.isoformat(),
                "ended_at": finished_at.isoformat(),
                "output_data": {"total_matches": True},
            }
        )
        for cyberdesk_id, workflow_id in runs
    ]
    started = time.perf_counter()
    outcomes = [
        webhook_event_record(
            event_id=f"bench-{uuid.uuid4()}",
            event_type="run_complete",
            payload={"event_type": "run_complete", "run": {"id": str(event.id)}},
            upstream=event,
        )
        for event in events
    ]
    took = time.perf_counter() - started
    applied = outcomes.count("applied")
    bench.rows.append(
        Row(
            figure="5g. Webhooks the database absorbs: run_complete recorded and applied, "
            "one process",
            measured=f"{len(events) / took:.0f} events/s ({applied}/{len(events)} applied, "
            f"{took * 1000 / len(events):.1f} ms each)",
            reference="each: 1 transaction (event row, run locked + updated, finalize task)",
            target="(capacity: no target)",
            verdict="info",
        )
    )
