"""Step 2 of a batch: the plan. One transaction stores the batch and every run it will send,
each with its idempotency key, before anything is sent."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from launcher.models import Batch, ModelOption, Run, RunEvent, RunStatus, Submission, Workflow
from launcher.services.batches.rows import BatchRow, batch_blocker, max_runs
from launcher.services.prompts import ResolvedPrompt
from launcher.services.run_events import run_events_record_launched

logger = logging.getLogger(__name__)


def batch_size(*, rows: int, models: int, prompts: int) -> int:
    return rows * max(models, 1) * max(prompts, 1)


class BatchRefused(Exception):
    """The batch cannot be planned; the message is safe to show."""


def batch_create(
    *,
    user,
    workflow: Workflow,
    models: Sequence[ModelOption | None],
    prompts: Sequence[ResolvedPrompt],
    rows: Sequence[BatchRow],
    token: uuid.UUID | str,
    name: str = "",
) -> Batch:
    """Store the batch and every run it will send, in one transaction; enqueue the sending.

    Each run's idempotency key is derived from the form's one-time `token` and the run's place
    in the plan, so the same form posted twice finds the batch it already made instead of
    planning (and sending) it again. `None` in `models` is "workflow default".
    """
    if not rows:
        raise BatchRefused("No valid rows to launch.")
    if not models or not prompts:
        raise BatchRefused("Choose at least one model and one prompt.")
    total = batch_size(rows=len(rows), models=len(models), prompts=len(prompts))
    if total > max_runs():
        raise BatchRefused(f"That is {total} runs; a batch is at most {max_runs()}.")
    if blocker := batch_blocker(workflow):
        raise BatchRefused(blocker)
    for model in models:
        if model is not None and not model.is_offered:
            raise BatchRefused(f"{model.name} is no longer offered; choose another model.")

    token = uuid.UUID(str(token))
    launched_by = user if getattr(user, "is_authenticated", False) else None
    planned = []
    for row in rows:
        for model in models:
            for prompt in prompts:
                place = f"{row.number}|{model.pk if model else '-'}|{prompt.choice.value}"
                planned.append(
                    Run(
                        idempotency_key=uuid.uuid5(token, place),
                        workflow=workflow,
                        batch_row=row.number,
                        model_option=model,
                        **prompt.run_fields(),
                        input_values=dict(row.values),
                        launched_by=launched_by,
                        submission=Submission.QUEUED,
                        status=RunStatus.PENDING,
                    )
                )
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                workflow=workflow,
                name=name[:200],
                state=Batch.State.SUBMITTING,
                is_matrix=len(models) > 1 or len(prompts) > 1,
                created_by=launched_by,
            )
            for run in planned:
                run.batch = batch
            Run.objects.bulk_create(planned, batch_size=500)
            run_events_record_launched(
                runs=planned, actor=launched_by, source=RunEvent.Source.USER, batch_id=batch.pk
            )
            transaction.on_commit(lambda: _enqueue_submit(batch.pk))
    except IntegrityError:
        # The same form again: its runs (and batch) already exist.
        existing = Run.objects.filter(idempotency_key=planned[0].idempotency_key).first()
        if existing is None or existing.batch_id is None:
            raise
        logger.info("Batch %s: form submitted again; not planning twice", existing.batch_id)
        return Batch.objects.get(pk=existing.batch_id)
    logger.info(
        "Batch %s planned: %d runs of workflow %s (%d rows × %d models × %d prompts)",
        batch.pk,
        total,
        workflow.pk,
        len(rows),
        len(models),
        len(prompts),
    )
    return batch


def _enqueue_submit(batch_id: int) -> None:
    from launcher.tasks import batch_submit_task  # tasks import services, not the reverse

    batch_submit_task.enqueue(batch_id)
