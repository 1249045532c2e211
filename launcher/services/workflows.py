"""The local mirror of upstream workflows.

The API stays the source of truth; the mirror exists so runs, prompt versions and labels can
point at a workflow, and so pages can list workflows without an API call each time. Rows are
never deleted (runs and versions reference them). On API errors the last mirror is kept and
the error goes to the caller, which shows a message.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from launcher.cyberdesk import errors, get_client, quick_reads
from launcher.models import Workflow
from launcher.services.api_status import api_outage, api_outage_note

logger = logging.getLogger(__name__)


def _max_age() -> timedelta:
    # A workflow list a minute old is fine for picking one; the launch page fetches the chosen
    # workflow fresh anyway when it is missing.
    return timedelta(seconds=settings.WORKFLOW_MIRROR_MAX_AGE_SECONDS)


def _model_metadata_dict(metadata) -> dict | None:
    if metadata is None:
        return None
    if dataclasses.is_dataclass(metadata):
        metadata = dataclasses.asdict(metadata)
    return {key: (str(value) if value is not None else None) for key, value in metadata.items()}


def _tag_names(tags) -> list[str]:
    names = []
    for tag in tags or []:
        name = tag.get("name") if isinstance(tag, dict) else getattr(tag, "name", tag)
        if name:
            names.append(str(name))
    return names


def workflow_store(upstream) -> Workflow:
    """Upsert one mirror row from an API workflow (`launcher.cyberdesk.types.Workflow`)."""
    workflow, _ = Workflow.objects.update_or_create(
        pk=upstream.id,
        defaults={
            "name": upstream.name or "",
            "main_prompt": upstream.main_prompt or "",
            "input_schema": upstream.input_schema,
            "model_metadata": _model_metadata_dict(upstream.model_metadata),
            "tags": _tag_names(upstream.tags),
            "last_run_errored": bool(upstream.last_run_errored),
            "last_error_at": getattr(upstream, "last_errored_run_start", None),
            "last_error_run_id": getattr(upstream, "last_errored_run_id", None),
            "has_post_run_checks": bool(upstream.has_post_run_checks),
            "upstream_updated_at": upstream.updated_at,
            "synced_at": timezone.now(),
        },
    )
    return workflow


def workflows_sync() -> list[Workflow]:
    """Fetch every workflow from the API and upsert the mirror. API errors propagate."""

    upstream = get_client().list_workflows()
    with transaction.atomic():
        return [workflow_store(item) for item in upstream]


def workflows_sync_if_stale() -> bool:
    """Sync when the mirror is empty or older than the max age. Returns whether it synced.

    API errors are logged and swallowed: the caller keeps showing the last mirror.
    """

    last = Workflow.objects.aggregate(last=Max("synced_at"))["last"]
    if last is not None and timezone.now() - last < _max_age():
        return False
    # A page calls this: while the API is known to be down it shows the last mirror at once,
    # and otherwise tries once, quickly (services/api_status.py).
    if api_outage() is not None:
        return False
    try:
        with quick_reads():
            workflows_sync()
    except errors.CyberdeskError as exc:
        logger.warning("workflow sync failed; keeping the last mirror: %s", exc)
        api_outage_note(exc)
        return False
    return True


def workflow_refresh(workflow: Workflow) -> Workflow:
    """Fetch one workflow again from the API and update its mirror row. Errors propagate."""

    return workflow_store(get_client().get_workflow(workflow.pk))


def workflow_get_or_sync(workflow_id: uuid.UUID | str) -> Workflow:
    """The mirror row of `workflow_id`, fetched from the API when it is not mirrored yet.

    Raises Workflow.DoesNotExist when the API does not know it either (or the id is not a
    UUID); other API errors (`launcher.cyberdesk.errors.CyberdeskError`) propagate.
    """

    try:
        workflow_id = uuid.UUID(str(workflow_id))
    except ValueError:
        raise Workflow.DoesNotExist(f"{workflow_id!r} is not a workflow id.") from None
    workflow = Workflow.objects.filter(pk=workflow_id).first()
    if workflow is not None:
        return workflow
    try:
        upstream = get_client().get_workflow(workflow_id)
    except errors.NotFound:
        raise Workflow.DoesNotExist(f"No workflow {workflow_id}.") from None
    return workflow_store(upstream)


def workflow_choose(
    workflow_id: str | None, workflows: list[Workflow]
) -> tuple[Workflow | None, str]:
    """The workflow a form is for (its `workflow` parameter), and a message when it cannot be had.

    The first listed workflow stands in when none is asked for, or when the one asked for is
    gone or cannot be fetched: the form still renders, with the message next to it.
    """
    fallback = workflows[0] if workflows else None
    if not workflow_id:
        return fallback, ""
    for workflow in workflows:
        if str(workflow.pk) == workflow_id:
            return workflow, ""
    try:
        return workflow_get_or_sync(workflow_id), ""
    except Workflow.DoesNotExist:
        return fallback, "That workflow does not exist (any more)."
    except errors.CyberdeskError as exc:
        return fallback, f"Cyberdesk is unreachable: {exc}"
