"""Writes: creating, cancelling, retrying and patching runs; patching workflows.

Views parse and type-check the request (422s); these functions enforce the business rules the
real API enforces after that (404 unknown workflow, 400 bad model ids, 422 input_schema, 409
retry of an active run) and store the result.
"""

import mimetypes
import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from launcher.sandbox import clock, lifecycle, tasks, webhooks
from launcher.sandbox.errors import ApiError, ValidationFailed, not_found
from launcher.sandbox.inputs import inputs_check
from launcher.sandbox.models import (
    ACTIVE_STATUSES,
    ORGANIZATION_ID,
    TERMINAL_STATUSES,
    AttachmentType,
    ModelConfiguration,
    Run,
    RunAttachment,
    RunStatus,
    Workflow,
)
from launcher.sandbox.params import ABSENT, MODEL_ROLES
from launcher.sandbox.payloads import iso

DEFAULT_TARGET_PATH = "~/CyberdeskTransfers/"


def _given(value) -> bool:
    return value is not ABSENT and value is not None


def workflow_for_run(workflow_id: uuid.UUID) -> Workflow:
    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is None:
        raise not_found("Workflow")
    return workflow


def model_ids_check(ids: dict[str, uuid.UUID | None]) -> None:
    """400 when a referenced model configuration does not exist (spec §3.6, seed 000)."""
    wanted = {str(value) for value in ids.values() if value}
    found = {
        str(pk)
        for pk in ModelConfiguration.objects.filter(pk__in=wanted).values_list("pk", flat=True)
    }
    for field, value in ids.items():
        if value and str(value) not in found:
            raise ApiError(400, f"Model configuration {value} ({field}) not found")


def run_model_metadata(
    workflow: Workflow, *, main_agent_model_id, model_metadata
) -> dict[str, str | None] | None:
    """The model roles the run overrides — each role of `model_metadata` it sets, and
    `main_agent_model_id` — and nothing else: the API echoes only the overrides sent (SDK
    2.2.69: "Null means the run falls back to the workflow's model_metadata"). None when the
    run overrides nothing. The effective model (`lifecycle.effective_model`) falls back to the
    workflow's roles at execution time."""
    requested_main = (model_metadata or {}).get("main_agent_model_id")
    if _given(main_agent_model_id) and requested_main and requested_main != main_agent_model_id:
        raise ApiError(
            400,
            "main_agent_model_id and model_metadata.main_agent_model_id disagree; "
            "send one of them, or the same id in both",
        )
    overrides = {role: value for role, value in (model_metadata or {}).items() if value is not None}
    if _given(main_agent_model_id):
        overrides["main_agent_model_id"] = main_agent_model_id
    model_ids_check({f"model_metadata.{role}": value for role, value in overrides.items()})
    if not overrides:
        return None
    return {role: str(value) for role, value in overrides.items() if role in MODEL_ROLES}


def _sensitive_aliases(sensitive_input_values: dict | None) -> dict | None:
    """Vault aliases for the sensitive inputs: the values themselves go no further than this."""
    if not sensitive_input_values:
        return None
    return {name: f"sbx_vault_{uuid.uuid4().hex[:16]}" for name in sensitive_input_values}


def _input_attachments(run: Run, file_inputs: list[dict], *, now: datetime) -> list[str]:
    ids = []
    for file in file_inputs or []:
        attachment = RunAttachment.objects.create(
            run=run,
            filename=file["filename"],
            content_type=mimetypes.guess_type(file["filename"])[0] or "application/octet-stream",
            attachment_type=AttachmentType.INPUT,
            content=file["content"],
            size_bytes=len(file["content"]),
            target_path=file["target_path"] or DEFAULT_TARGET_PATH,
            cleanup_imports_after_run=file["cleanup_imports_after_run"],
            created_at=now,
        )
        ids.append(str(attachment.id))
    return ids


def _check_snapshots(workflow: Workflow) -> list[dict]:
    """The run keeps the checks it started with; editing the workflow later does not change it."""
    return [
        {
            "id": str(uuid.uuid4()),
            "post_run_check_id": check.get("id"),
            "snapshot_version": 1,
            "name": check.get("name"),
            "description": check.get("description"),
            "type": check.get("type"),
            "order": check.get("order", index),
            "check_prompt": check.get("check_prompt"),
            "model": check.get("model"),
            "status": "pending",
            "started_at": None,
            "ended_at": None,
            "error_message": None,
            "messages": [],
            "matched_filenames": [],
        }
        for index, check in enumerate(workflow.post_run_checks or [])
    ]


def _inputs_check(workflow: Workflow, input_values, sensitive_input_values) -> None:
    problems = inputs_check(workflow.input_schema, input_values, sensitive_input_values)
    if problems:
        raise ValidationFailed(problems)


def _new_run(workflow: Workflow, *, now: datetime, **fields: Any) -> Run:
    run = Run(workflow=workflow, created_at=now, **fields)
    run.post_run_checks = _check_snapshots(workflow)
    lifecycle.run_clock_start(run, now=now)
    return run


def run_create(
    *,
    workflow_id: uuid.UUID,
    main_prompt: str | None = None,
    main_agent_model_id: uuid.UUID | None = None,
    model_metadata: dict | None = None,
    input_values: dict | None = None,
    sensitive_input_values: dict | None = None,
    file_inputs: list[dict] | None = None,
    is_priority: bool = False,
    machine_id: uuid.UUID | None = None,
    pool_ids: list[uuid.UUID] | None = None,
    session_id: uuid.UUID | None = None,
    start_session: bool = False,
    session_alias: str | None = None,
    release_session_after: bool | None = None,
) -> Run:
    workflow = workflow_for_run(workflow_id)
    merged_models = run_model_metadata(
        workflow, main_agent_model_id=main_agent_model_id, model_metadata=model_metadata
    )
    _inputs_check(workflow, input_values, sensitive_input_values)
    now = clock.now()
    run_id = uuid.uuid4()
    with transaction.atomic():
        run = _new_run(
            workflow,
            now=now,
            id=run_id,
            main_prompt=main_prompt,
            model_metadata=merged_models,
            input_values=input_values,
            sensitive_input_aliases=_sensitive_aliases(sensitive_input_values),
            is_priority=bool(is_priority),
            machine_id=machine_id,
            pool_ids=[str(pool) for pool in pool_ids] if pool_ids else None,
            session_id=run_id if start_session and not session_id else session_id,
            session_alias=session_alias,
            release_session_after=release_session_after,
        )
        run.save()
        run.input_attachment_ids = _input_attachments(run, file_inputs, now=now)
        if run.input_attachment_ids:
            run.save(update_fields=["input_attachment_ids"])
        transaction.on_commit(tasks.driver_ensure_scheduled)
    return run


def runs_bulk_create(
    *,
    workflow_id: uuid.UUID,
    count: int,
    input_values: dict | None = None,
    sensitive_input_values: dict | None = None,
    file_inputs: list[dict] | None = None,
    is_priority: bool = False,
    machine_id: uuid.UUID | None = None,
    pool_ids: list[uuid.UUID] | None = None,
    session_id: uuid.UUID | None = None,
    start_session: bool = False,
) -> list[Run]:
    """`count` identical runs with the workflow's own prompt and models, in one transaction."""
    workflow = workflow_for_run(workflow_id)
    _inputs_check(workflow, input_values, sensitive_input_values)
    now = clock.now()
    shared_session = uuid.uuid4() if start_session and not session_id else session_id
    runs = []
    with transaction.atomic():
        for _ in range(count):
            run = _new_run(
                workflow,
                now=now,
                id=uuid.uuid4(),
                input_values=input_values,
                sensitive_input_aliases=_sensitive_aliases(sensitive_input_values),
                is_priority=bool(is_priority),
                machine_id=machine_id,
                pool_ids=[str(pool) for pool in pool_ids] if pool_ids else None,
                session_id=shared_session,
            )
            run.save()
            run.input_attachment_ids = _input_attachments(run, file_inputs, now=now)
            if run.input_attachment_ids:
                run.save(update_fields=["input_attachment_ids"])
            runs.append(run)
        transaction.on_commit(tasks.driver_ensure_scheduled)
    return runs


def run_retry(run_id: uuid.UUID, **changes: Any) -> Run:
    """Send a finished run back to `scheduling`, in place (same id), with outputs cleared.

    `changes` holds only what the request sent (input_values, sensitive_input_values,
    file_inputs, machine_id, pool_ids, reuse_session, session_id, start_session, session_alias,
    release_session_after, is_priority); prompt and model overrides stay as they were."""
    now = clock.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("workflow").filter(pk=run_id).first()
        if run is None:
            raise not_found("Run")
        if lifecycle.run_advance(run, now=now):
            run.save()
        if run.status not in TERMINAL_STATUSES:
            raise ApiError(
                409, f"Run is {run.status}; only a finished run can be retried (cancel it first)"
            )
        input_values = changes.get("input_values", ABSENT)
        sensitive = changes.get("sensitive_input_values", ABSENT)
        if input_values is not ABSENT or sensitive is not ABSENT:
            _inputs_check(
                run.workflow,
                run.input_values if input_values is ABSENT else input_values,
                None if sensitive is ABSENT else sensitive,
            )
        if input_values is not ABSENT:
            run.input_values = input_values
        if sensitive is not ABSENT:
            run.sensitive_input_aliases = _sensitive_aliases(sensitive)
        if changes.get("file_inputs", ABSENT) is not ABSENT:
            run.attachments.filter(attachment_type=AttachmentType.INPUT).delete()
            run.input_attachment_ids = _input_attachments(run, changes["file_inputs"], now=now)
        _apply_retry_placement(run, changes)
        run.attachments.filter(attachment_type=AttachmentType.OUTPUT).delete()
        run.attempt += 1
        run.error = None
        run.output_data = None
        run.output_attachment_ids = []
        run.run_message_history = None
        run.usage_metadata = None
        run.llm_cost_rows = []
        run.started_at = None
        run.ended_at = None
        run.post_run_checks = _check_snapshots(run.workflow)
        lifecycle.run_clock_start(run, now=now)
        run.save()
        transaction.on_commit(tasks.driver_ensure_scheduled)
    return run


def _apply_retry_placement(run: Run, changes: dict) -> None:
    machine_id = changes.get("machine_id", ABSENT)
    run.machine_id = machine_id if machine_id is not ABSENT else None
    if changes.get("pool_ids", ABSENT) is not ABSENT:
        pools = changes["pool_ids"]
        run.pool_ids = [str(pool) for pool in pools] if pools else None
    if changes.get("is_priority", ABSENT) not in (ABSENT, None):
        run.is_priority = changes["is_priority"]
    session_id = changes.get("session_id", ABSENT)
    if _given(session_id):
        run.session_id = session_id
    elif changes.get("start_session"):
        run.session_id = run.id
    elif changes.get("reuse_session", ABSENT) is False:
        run.session_id = None
        run.session_alias = None
        run.release_session_after = None
    if changes.get("session_alias", ABSENT) is not ABSENT:
        run.session_alias = changes["session_alias"]
    if changes.get("release_session_after", ABSENT) is not ABSENT:
        run.release_session_after = changes["release_session_after"]


RUN_PATCHABLE = (
    "error",
    "output_data",
    "output_attachment_ids",
    "run_message_history",
    "input_values",
    "usage_metadata",
    "post_run_checks",
    "started_at",
    "ended_at",
    "release_session_after",
)


def run_update(run_id: uuid.UUID, changes: dict[str, Any]) -> Run:
    """PATCH /v1/runs/{id}. `{"status": "cancelled"}` cancels an active run (there is no cancel
    endpoint); cancelling a run that already finished leaves it as it is."""
    now = clock.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("workflow").filter(pk=run_id).first()
        if run is None:
            raise not_found("Run")
        lifecycle.run_advance(run, now=now)
        status = changes.get("status", ABSENT)
        if status == RunStatus.CANCELLED:
            lifecycle.run_cancel(run, now=now)
        elif status in TERMINAL_STATUSES and run.status in ACTIVE_STATUSES:
            # What the worker does when it finishes a run by hand.
            run.status = status
            run.ended_at = now
            run.next_transition_at = None
            webhooks.webhook_event_create(run, occurred_at=now)
        elif _given(status) and status != run.status:
            raise ApiError(
                409,
                f"Cannot move a run from {run.status} to {status}; retry a finished run instead",
            )
        for field in RUN_PATCHABLE:
            if field in changes and changes[field] is not ABSENT:
                setattr(run, field, changes[field])
        run.save()
    return run


def run_delete(run_id: uuid.UUID) -> None:
    deleted, _ = Run.objects.filter(pk=run_id).delete()
    if not deleted:
        raise not_found("Run")


# --- Workflows ------------------------------------------------------------------------------------

WORKFLOW_SNAPSHOT_FIELDS = (
    "name",
    "main_prompt",
    "input_schema",
    "output_schema",
    "model_metadata",
    "is_webhooks_enabled",
    "includes_file_exports",
)


def workflow_update(workflow_id: uuid.UUID, changes: dict[str, Any]) -> Workflow:
    """PATCH /v1/workflows/{id}: only the keys sent change; the current version is pushed onto
    `old_versions` first."""
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update().filter(pk=workflow_id).first()
        if workflow is None:
            raise not_found("Workflow")
        model_metadata = changes.get("model_metadata", ABSENT)
        if model_metadata:
            model_ids_check({f"model_metadata.{k}": v for k, v in model_metadata.items()})
        now = timezone.now()
        snapshot = {field: getattr(workflow, field) for field in WORKFLOW_SNAPSHOT_FIELDS}
        workflow.old_versions = [
            *(workflow.old_versions or []),
            {
                "version": len(workflow.old_versions or []) + 1,
                **snapshot,
                "created_at": iso(workflow.updated_at),
                "superseded_at": iso(now),
            },
        ]
        for field in (
            "name",
            "main_prompt",
            "input_schema",
            "output_schema",
            "includes_file_exports",
            "is_webhooks_enabled",
            "post_run_check_failure_cleanup_prompt",
        ):
            if changes.get(field, ABSENT) is not ABSENT:
                setattr(workflow, field, changes[field])
        if "terminal_command_allowlist" in changes:
            workflow.terminal_command_allowlist = changes["terminal_command_allowlist"] or None
        if model_metadata is not ABSENT:
            workflow.model_metadata = (
                None
                if model_metadata is None
                else {
                    **(workflow.model_metadata or {}),
                    **{k: (str(v) if v else None) for k, v in model_metadata.items()},
                }
            )
        if "workflow_metadata" in changes:
            workflow.workflow_metadata = _merged_workflow_metadata(
                workflow.workflow_metadata, changes["workflow_metadata"]
            )
        if changes.get("post_run_checks", ABSENT) is not ABSENT:
            workflow.post_run_checks = _reconciled_checks(
                workflow.post_run_checks, changes["post_run_checks"] or [], now=now
            )
        workflow.updated_at = now
        workflow.save()
    return workflow


def _merged_workflow_metadata(current: dict | None, update: dict | None) -> dict | None:
    """Top-level null clears everything; a null key removes that key; others are set."""
    if update is None:
        return None
    merged = dict(current or {})
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, datetime):
            merged[key] = iso(value)
        elif isinstance(value, uuid.UUID):
            merged[key] = str(value)
        else:
            merged[key] = value
    return merged


def _reconciled_checks(current: list[dict], upserts: list[dict], *, now: datetime) -> list[dict]:
    """The new list of checks: upserts with a known id update that check, others are new;
    checks left out are removed."""
    existing = {check["id"]: check for check in current or []}
    result = []
    for order, upsert in enumerate(upserts):
        previous = existing.get(str(upsert.get("id"))) if upsert.get("id") else None
        check = {
            **(previous or {"id": str(uuid.uuid4()), "created_at": iso(now)}),
            **{key: value for key, value in upsert.items() if key != "id"},
            "organization_id": ORGANIZATION_ID,
            "updated_at": iso(now),
        }
        check.setdefault("order", order)
        result.append(check)
    return result
