"""The sandbox's driver: moves runs nobody is watching and sends due webhooks.

Reads advance runs on their own (lifecycle.run_refresh), but a webhook must fire even when
nobody polls, so `sandbox_drive` runs in the django-tasks worker that `make run` starts
(`manage.py db_worker`). Each pass schedules the next one for the moment something is next due
(a run transition or a webhook retry) and stops when nothing is pending; creating or retrying a
run schedules it again. At most one pending instance exists at a time.
"""

import logging
from datetime import datetime, timedelta

from django.utils import timezone
from django_tasks import task

from launcher.sandbox import lifecycle, webhooks
from launcher.sandbox.idempotency import idempotency_records_purge

logger = logging.getLogger(__name__)

# Never wake more often than this, even when transitions are due in quick succession.
MIN_INTERVAL = timedelta(milliseconds=250)


def sandbox_tick() -> datetime | None:
    """One pass: advance due runs, send due webhooks, forget expired idempotency keys.
    Returns when the next pass is needed (None: nothing pending)."""
    lifecycle.runs_advance_due()
    webhooks.webhooks_deliver_due()
    idempotency_records_purge()
    return next_wake()


def next_wake() -> datetime | None:
    moments = [lifecycle.next_transition_due(), webhooks.next_delivery_due()]
    moments = [moment for moment in moments if moment is not None]
    return min(moments) if moments else None


@task()
def sandbox_drive() -> None:
    sandbox_tick()
    driver_ensure_scheduled()


def driver_ensure_scheduled() -> None:
    """Make sure one pending `sandbox_drive` will run by the next due moment."""
    wake = next_wake()
    if wake is None:
        return
    run_after = max(wake, timezone.now() + MIN_INTERVAL)
    backend = sandbox_drive.get_backend()
    try:
        from django_tasks_db.backend import DatabaseBackend
        from django_tasks_db.models import DBTaskResult
    except ImportError:  # pragma: no cover - the database backend is a dependency
        DatabaseBackend = None  # noqa: N806
    if DatabaseBackend is not None and isinstance(backend, DatabaseBackend):
        pending = DBTaskResult.objects.filter(
            task_path=sandbox_drive.module_path, status="READY"
        ).order_by("run_after")
        first = pending.first()
        if first is not None:
            if first.run_after > run_after:
                pending.filter(pk=first.pk).update(run_after=run_after)
            return
    elif not backend.supports_defer:
        logger.debug("sandbox driver not scheduled: the task backend cannot defer")
        return
    sandbox_drive.using(run_after=run_after).enqueue()
