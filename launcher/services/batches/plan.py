"""Step 2 of a batch: the plan. One transaction stores the batch and every run it will send,
each with its idempotency key, before anything is sent."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from launcher.models import (
    Batch,
    ModelOption,
    PromptMode,
    Run,
    RunEvent,
    RunStatus,
    Submission,
    Workflow,
)
from launcher.services.batches.chunks import chunks_plan
from launcher.services.batches.rows import BatchRow, batch_blocker, max_runs
from launcher.services.canary import canary_route, canary_running
from launcher.services.prompts import ResolvedPrompt
from launcher.services.rollups import rollups_count_inserted

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
    first_key = uuid.uuid5(token, _place(rows[0], models[0], prompts[0]))
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                workflow=workflow,
                name=name[:200],
                state=Batch.State.SUBMITTING,
                is_matrix=len(models) > 1 or len(prompts) > 1,
                created_by=launched_by,
                # Every run of the plan is inserted below, in this transaction; none is added
                # later, so the batches list reads this instead of counting them.
                run_count=total,
            )
            run_ids = _runs_insert(
                batch=batch,
                workflow=workflow,
                launched_by=launched_by,
                rows=rows,
                models=models,
                prompts=prompts,
                token=token,
            )
            chunks = chunks_plan(batch=batch, run_ids=run_ids)
            # Counted as launched in the inserting transaction (bulk inserts skip any hook).
            rollups_count_inserted(Run.objects.filter(batch=batch))
            transaction.on_commit(lambda: _enqueue_submit(batch.pk, chunks=chunks))
    except IntegrityError:
        # The same form again: its runs (and batch) already exist.
        existing = Run.objects.filter(idempotency_key=first_key).first()
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


def _place(row: BatchRow, model: ModelOption | None, prompt: ResolvedPrompt) -> str:
    """A run's place in the plan; with the form's token it makes the run's idempotency key."""
    return f"{row.number}|{model.pk if model else '-'}|{prompt.choice.value}"  # as `_runs_insert`


class _Inserter:
    """Rows of one model inserted in one statement (`executemany`; `COPY` on PostgreSQL).

    `bulk_create` prepares every field of every row through the ORM (about 30 per run): at
    10,000 runs that is seconds of CPU for values that are nearly all the same. Here the
    constant columns are prepared once, from a template instance (defaults and `auto_now_add`
    included), and the caller prepares each varying value once (`prep`), however many rows
    share it. The field list and the preparation still come from the model, so a new column
    cannot be missed.
    """

    def __init__(self, template):
        self.model = type(template)
        self.fields = [f for f in self.model._meta.concrete_fields if not f.primary_key]
        self.copying = connection.vendor == "postgresql"
        self.constant = {f.attname: self._prep(f, f.pre_save(template, True)) for f in self.fields}
        self.rows: list[list] = []

    def _prep(self, field, value):
        value = field.get_db_prep_save(value, connection)
        if self.copying and type(value).__name__ == "Jsonb":
            # COPY takes the JSON text; dumping it here, once, spares one dump per row.
            value = json.dumps(value.obj)
        return value

    def prep(self, attname: str, value):
        return self._prep(self.model._meta.get_field(attname), value)

    def add(self, varying: dict) -> None:
        """One row: prepared values by attname for the columns that differ from the template."""
        row = {**self.constant, **varying}
        self.rows.append([row[f.attname] for f in self.fields])

    def insert(self) -> None:
        quote = connection.ops.quote_name
        table = quote(self.model._meta.db_table)
        columns = ", ".join(quote(f.column) for f in self.fields)
        with connection.cursor() as cursor:
            if self.copying:
                # psycopg quotes executemany's parameters in Python, value by value; COPY
                # sends the rows in its own format from C: ten times faster at 10,000 runs.
                # The raw cursor's errors are psycopg's: wrapped, a duplicate key is an
                # IntegrityError.
                copy_sql = f"COPY {table} ({columns}) FROM STDIN"
                with connection.wrap_database_errors, cursor.cursor.copy(copy_sql) as copy:
                    for row in self.rows:
                        copy.write_row(row)
            else:
                placeholders = ", ".join(["%s"] * len(self.fields))
                sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
                cursor.executemany(sql, self.rows)


def _runs_insert(
    *,
    batch: Batch,
    workflow: Workflow,
    launched_by,
    rows: Sequence[BatchRow],
    models: Sequence[ModelOption | None],
    prompts: Sequence[ResolvedPrompt],
    token: uuid.UUID,
) -> list[int]:
    """Insert every run of the plan, in plan order, then each one's `launched` history entry;
    return the run ids in plan order."""
    runs = _Inserter(
        Run(
            workflow=workflow,
            batch=batch,
            launched_by=launched_by,
            submission=Submission.QUEUED,
            status=RunStatus.PENDING,
        )
    )
    by_model = [runs.prep("model_option_id", model.pk if model else None) for model in models]

    def prompt_columns(prompt: ResolvedPrompt) -> dict:
        return {
            "prompt_mode": runs.prep("prompt_mode", str(prompt.mode)),
            "prompt_label": runs.prep("prompt_label", prompt.label),
            "prompt_version_id": runs.prep(
                "prompt_version_id", prompt.version.pk if prompt.version else None
            ),
            "prompt_sha256": runs.prep("prompt_sha256", prompt.sha256),
            "canary_id": runs.prep("canary_id", prompt.canary_id),
            "canary_arm": runs.prep("canary_arm", prompt.canary_arm),
        }

    # A label with a running canary: each run takes its arm from its own key (`canary_route`),
    # so such a prompt has two sets of columns, one per arm (looked up once, not per run).
    canaries = {
        prompt.label: canary_running(workflow_id=workflow.pk, label=prompt.label)
        for prompt in prompts
        if prompt.mode == PromptMode.LABEL
    }
    by_prompt = [prompt_columns(prompt) for prompt in prompts]
    arm_columns: dict[tuple[int, str], tuple[ResolvedPrompt, dict]] = {}
    taken: list[tuple[ModelOption | None, ResolvedPrompt]] = []  # each run's, in plan order
    # The parts of `_place`, worked out once.
    model_places = [str(model.pk) if model else "-" for model in models]
    prompt_places = [prompt.choice.value for prompt in prompts]
    for row in rows:
        row_values = {
            "batch_row": runs.prep("batch_row", row.number),
            "input_values": runs.prep("input_values", dict(row.values)),
        }
        for model, model_place, model_value in zip(models, model_places, by_model, strict=True):
            for index, (prompt, prompt_place, prompt_values) in enumerate(
                zip(prompts, prompt_places, by_prompt, strict=True)
            ):
                key = uuid.uuid5(token, f"{row.number}|{model_place}|{prompt_place}")
                canary = canaries.get(prompt.label)
                if canary is not None:
                    routed = canary_route(prompt, routing_key=key, canary=canary)
                    arm = (index, routed.canary_arm or "")
                    if arm not in arm_columns:
                        arm_columns[arm] = (routed, prompt_columns(routed))
                    prompt, prompt_values = arm_columns[arm]
                taken.append((model, prompt))
                runs.add(
                    {
                        **row_values,
                        **prompt_values,
                        "model_option_id": model_value,
                        "idempotency_key": runs.prep("idempotency_key", key),
                    }
                )
    runs.insert()
    run_ids = list(Run.objects.filter(batch=batch).order_by("pk").values_list("pk", flat=True))

    # Each run's `launched` entry, as `run_events.run_events_record_launched` writes it.
    events = _Inserter(
        RunEvent(
            attempt=1,
            kind=RunEvent.Kind.LAUNCHED,
            source=RunEvent.Source.USER,
            actor=launched_by,
            at=timezone.now(),
        )
    )
    details: dict[tuple, object] = {}  # one prepared detail per (model, prompt version) taken
    for run_id, (model, prompt) in zip(run_ids, taken, strict=True):
        place = (model.pk if model else None, prompt.choice.value, prompt.canary_arm)
        if place not in details:
            details[place] = events.prep(
                "detail",
                {
                    "model": model.name if model else "Workflow default",
                    "model_id": str(model.pk) if model else None,
                    "prompt": (
                        str(PromptMode.STORED.label)
                        if prompt.mode == PromptMode.STORED or prompt.version is None
                        else prompt.description
                    ),
                    "prompt_version": prompt.version.number if prompt.version else None,
                    "prompt_sha256": prompt.sha256,
                    "batch": batch.pk,
                },
            )
        events.add({"run_id": events.prep("run_id", run_id), "detail": details[place]})
    events.insert()
    return run_ids


def _enqueue_submit(batch_id: int, *, chunks: int) -> None:
    """One sending task per chunk, up to `BATCH_SENDERS`: that many workers can send the batch
    at once (each task claims chunks until none is left)."""
    from launcher.tasks import batch_submit_task  # tasks import services, not the reverse

    for _ in range(max(1, min(chunks, settings.BATCH_SENDERS))):
        batch_submit_task.enqueue(batch_id)
