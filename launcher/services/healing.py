"""Healing what the django-tasks database backend leaves behind when a worker dies.

That backend has no retries and no recovery of stalled tasks (RealOrangeOne/django-tasks#46):
a task whose `db_worker` is killed stays RUNNING for ever, and nothing runs it again. Launcher
does not rely on task rows to know whether work is alive:

- a batch's runs are held through chunk **leases** that the sender renews
  (`services/batches/chunks.py`): a dead sender's chunk is free again within `CHUNK_LEASE`;
- every task that must not stop **enqueues its stand-in before it starts working** (the
  reconciler its next pass, a batch sender a task for its batch a little later), so a
  `kill -9`, which runs no `finally`, still leaves the next task waiting in the queue;
- the reconciler's pass (every 30 s) starts a sender for any batch with free work and no task
  waiting, and marks task rows abandoned by a dead worker as failed (this module).

See docs/deploy.md for why this, and not a task engine with recovery built in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

logger = logging.getLogger(__name__)

# No task of Launcher's runs this long: they work in 30 s slices (plus the sends in flight,
# bounded by the client's timeouts). A row RUNNING for longer lost its worker.
ABANDONED_AFTER = timedelta(minutes=10)
ABANDONED = "launcher.services.healing.WorkerLost"


def task_results_abandoned_fail(*, older_than: timedelta = ABANDONED_AFTER) -> int:
    """Mark as FAILED the task rows still RUNNING long after any task can take; return how
    many. Their work was already taken over (leases, stand-ins): this only stops the rows
    from claiming to run for ever."""
    now = timezone.now()
    failed = DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, started_at__lt=now - older_than
    ).update(
        status=TaskResultStatus.FAILED,
        finished_at=now,
        exception_class_path=ABANDONED,
        traceback=f"The worker running this task stopped answering (RUNNING over {older_than}).",
    )
    if failed:
        logger.warning("%d task(s) lost their worker; marked failed", failed)
    return failed


def tasks_waiting(task, *, first_args: Iterable | None = None) -> set:
    """The first arguments of the READY rows of `task` (e.g. the batch ids that already have a
    sender waiting); with `first_args`, only among those."""
    waiting = DBTaskResult.objects.filter(task_path=task.module_path, status=TaskResultStatus.READY)
    if first_args is not None:
        first_args = list(first_args)
        if not first_args:
            return set()
        waiting = waiting.filter(args_kwargs__args__0__in=first_args)
    return {
        (args_kwargs.get("args") or [None])[0]
        for args_kwargs in waiting.values_list("args_kwargs", flat=True)
    }


def task_waiting_cancel(task, *, first_arg) -> int:
    """Delete the READY rows of `task` for `first_arg` (a stand-in no longer needed); a row a
    worker has just claimed is RUNNING and left alone."""
    deleted, _ = DBTaskResult.objects.filter(
        task_path=task.module_path, status=TaskResultStatus.READY, args_kwargs__args__0=first_arg
    ).delete()
    return deleted
