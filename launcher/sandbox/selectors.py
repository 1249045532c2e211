"""Reads: the filtered, ordered querysets behind the list endpoints, and `included` resources."""

import uuid
from datetime import datetime

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce

from launcher.sandbox.lifecycle import SANDBOX_MACHINE_IDS, SANDBOX_POOL_ID
from launcher.sandbox.models import ACTIVE_STATUSES, Run, RunAttachment, Workflow
from launcher.sandbox.payloads import tag_json, workflow_json


def workflows_filtered(
    *,
    search: str | None = None,
    created_at_from: datetime | None = None,
    created_at_to: datetime | None = None,
    updated_at_from: datetime | None = None,
    updated_at_to: datetime | None = None,
    tag_ids: list[uuid.UUID] | None = None,
) -> QuerySet[Workflow]:
    workflows = Workflow.objects.all()
    if search:
        # Ids are matched in Python: SQLite stores UUIDs without hyphens, PostgreSQL with them.
        ids = Workflow.objects.values_list("pk", flat=True)
        by_id = Q(id__in=[pk for pk in ids if search.lower() in str(pk)])
        workflows = workflows.filter(Q(name__icontains=search) | by_id)
    if created_at_from:
        workflows = workflows.filter(created_at__gte=created_at_from)
    if created_at_to:
        workflows = workflows.filter(created_at__lte=created_at_to)
    if updated_at_from:
        workflows = workflows.filter(updated_at__gte=updated_at_from)
    if updated_at_to:
        workflows = workflows.filter(updated_at__lte=updated_at_to)
    for tag_id in tag_ids or []:  # the workflow must carry every tag
        workflows = workflows.filter(tags__id=tag_id)
    return workflows.distinct().order_by("-updated_at", "id")


def workflow_included(workflows: list[Workflow], *, tags: bool, checks: bool) -> list[dict]:
    included: dict[tuple, dict] = {}
    for workflow in workflows:
        if tags:
            for tag in workflow.tags.all():
                included.setdefault(("tag", tag.pk), {"type": "tag", **tag_json(tag)})
        if checks:
            for check in workflow.post_run_checks or []:
                included.setdefault(
                    ("post_run_check", check["id"]), {"type": "post_run_check", **check}
                )
    return list(included.values())


def runs_filtered(
    *,
    workflow_id: uuid.UUID | None = None,
    machine_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    status: str | None = None,
    created_at_from: datetime | None = None,
    created_at_to: datetime | None = None,
    search: str | None = None,
    deep_search: bool = False,
    sort_mode: str | None = None,
) -> QuerySet[Run]:
    runs = Run.objects.all()
    if workflow_id:
        runs = runs.filter(workflow_id=workflow_id)
    if machine_id:
        runs = runs.filter(machine_id=machine_id)
    if session_id:
        runs = runs.filter(session_id=session_id)
    if status:
        runs = runs.filter(status=status)
    if created_at_from:
        runs = runs.filter(created_at__gte=created_at_from)
    if created_at_to:
        runs = runs.filter(created_at__lte=created_at_to)
    if search:
        needle = search.lower()
        match = Q(search_document__contains=needle)
        if deep_search:
            match |= Q(deep_search_document__contains=needle)
        runs = runs.filter(match)
    if sort_mode == "created_at_desc":
        return runs.order_by("-created_at", "-id")
    # "activity": active runs first (newest first), then the most recent completions.
    return runs.annotate(
        active_rank=Case(
            When(status__in=ACTIVE_STATUSES, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        ),
        activity_at=Coalesce("ended_at", "created_at"),
    ).order_by("active_rank", "-activity_at", "-id")


def _machine_json(machine_id) -> dict:
    number = (
        SANDBOX_MACHINE_IDS.index(machine_id) + 1 if machine_id in SANDBOX_MACHINE_IDS else None
    )
    return {
        "type": "machine",
        "id": str(machine_id),
        "name": f"sandbox-machine-{number}" if number else "pinned machine",
        "status": "connected",
        "hostname": f"SBX-DESKTOP-{number or 0}",
        "os_info": {"os_type": "windows", "os_version": "11"},
    }


def run_included(runs: list[Run], include: list[str] | None) -> list[dict]:
    """`include` → each related resource once, in `included` (JSON:API style)."""
    included: dict[tuple, dict] = {}
    for run in runs:
        if "workflow" in (include or []):
            included.setdefault(
                ("workflow", run.workflow_id), {"type": "workflow", **workflow_json(run.workflow)}
            )
        if run.machine_id and {"machine", "machine.pools"} & set(include or []):
            included.setdefault(("machine", run.machine_id), _machine_json(run.machine_id))
        if run.machine_id and "machine.pools" in (include or []):
            included.setdefault(
                ("pool", SANDBOX_POOL_ID),
                {"type": "pool", "id": str(SANDBOX_POOL_ID), "name": "Sandbox machines"},
            )
    return list(included.values())


def attachments_filtered(
    *, run_id: uuid.UUID | None = None, attachment_type: str | None = None
) -> QuerySet[RunAttachment]:
    attachments = RunAttachment.objects.defer("content")
    if run_id:
        attachments = attachments.filter(run_id=run_id)
    if attachment_type:
        attachments = attachments.filter(attachment_type=attachment_type)
    return attachments.order_by("created_at", "filename")
