"""JSON representations with the exact keys of the real API (spec §2)."""

from datetime import UTC, datetime

from launcher.sandbox.models import (
    ORGANIZATION_ID,
    SANDBOX_USER_ID,
    ModelConfiguration,
    Run,
    RunAttachment,
    Tag,
    Workflow,
)

# `fields=` projections always keep these (spec §3.8).
RUN_BASE_FIELDS = ("id", "workflow_id", "machine_id", "status", "created_at")
RUN_PROJECTABLE_FIELDS = (
    "ended_at",
    "error",
    "input_attachment_ids",
    "input_values",
    "is_priority",
    "machine_id",
    "main_prompt",
    "model_metadata",
    "organization_id",
    "output_attachment_ids",
    "output_data",
    "pool_ids",
    "post_run_checks",
    "release_session_after",
    "run_message_history",
    "sensitive_input_aliases",
    "session_alias",
    "session_id",
    "started_at",
    "usage_metadata",
    "user_id",
)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _str_or_none(value) -> str | None:
    return None if value is None else str(value)


def model_configuration_json(config: ModelConfiguration) -> dict:
    return {
        "id": str(config.id),
        "name": config.name,
        "description": config.description,
        "provider": config.provider,
        "model": config.model,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "timeout_seconds": config.timeout_seconds,
        "max_retries": config.max_retries,
        "additional_params": config.additional_params,
        "agent_harness_version_string": config.agent_harness_version_string,
        "is_computer_use_model": config.is_computer_use_model,
        "is_archived": config.is_archived,
        "is_system_default": config.is_system_default,
        # System rows belong to no organisation.
        "organization_id": None if config.is_system_default else ORGANIZATION_ID,
        "api_key_alias": None,
        "created_at": iso(config.created_at),
        "updated_at": iso(config.updated_at),
    }


def tag_json(tag: Tag, workflow_count: int | None = None) -> dict:
    data = {
        "id": str(tag.id),
        "name": tag.name,
        "description": tag.description,
        "emoji": tag.emoji,
        "color": tag.color,
        "group_id": None,
        "organization_id": ORGANIZATION_ID,
        "order": tag.order,
        "is_archived": tag.is_archived,
        "created_at": iso(tag.created_at),
        "updated_at": iso(tag.updated_at),
    }
    if workflow_count is not None:
        data["workflow_count"] = workflow_count
    return data


def workflow_json(
    workflow: Workflow, *, include_tags: bool = False, include_checks: bool = False
) -> dict:
    data = {
        "id": str(workflow.id),
        "name": workflow.name,
        "main_prompt": workflow.main_prompt,
        "input_schema": workflow.input_schema,
        "output_schema": workflow.output_schema,
        "includes_file_exports": workflow.includes_file_exports,
        "is_webhooks_enabled": workflow.is_webhooks_enabled,
        "terminal_command_allowlist": workflow.terminal_command_allowlist,
        "model_metadata": workflow.model_metadata,
        "post_run_check_failure_cleanup_prompt": workflow.post_run_check_failure_cleanup_prompt,
        "user_id": str(SANDBOX_USER_ID),
        "organization_id": ORGANIZATION_ID,
        "includes_input_variables": "{" in workflow.main_prompt,
        "workflow_metadata": workflow.workflow_metadata,
        "old_versions": workflow.old_versions,
        "created_at": iso(workflow.created_at),
        "updated_at": iso(workflow.updated_at),
    }
    if include_tags:
        data["tags"] = [tag_json(tag) for tag in workflow.tags.all()]
    if include_checks:
        data["post_run_checks"] = workflow.post_run_checks
    return data


def run_json(run: Run, *, fields: list[str] | None = None) -> dict:
    data = {
        "id": str(run.id),
        "workflow_id": str(run.workflow_id),
        # Always present, even null: the SDK pops it without a default.
        "machine_id": _str_or_none(run.machine_id),
        "status": run.status,
        "created_at": iso(run.created_at),
        "user_id": str(SANDBOX_USER_ID),
        "organization_id": ORGANIZATION_ID,
        "is_priority": run.is_priority,
        "error": run.error,
        "output_data": run.output_data,
        "input_attachment_ids": run.input_attachment_ids,
        "output_attachment_ids": run.output_attachment_ids,
        "run_message_history": run.run_message_history,
        "input_values": run.input_values,
        "main_prompt": run.main_prompt,
        "model_metadata": run.model_metadata,
        "pool_ids": run.pool_ids,
        "sensitive_input_aliases": run.sensitive_input_aliases,
        "usage_metadata": run.usage_metadata,
        "post_run_checks": run.post_run_checks,
        "session_id": _str_or_none(run.session_id),
        "session_alias": run.session_alias,
        "release_session_after": run.release_session_after,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
    }
    if fields is None:
        return data
    keep = set(RUN_BASE_FIELDS) | set(fields)
    return {key: value for key, value in data.items() if key in keep}


def attachment_json(attachment: RunAttachment) -> dict:
    return {
        "id": str(attachment.id),
        "run_id": str(attachment.run_id),
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "attachment_type": attachment.attachment_type,
        "size_bytes": attachment.size_bytes,
        "storage_path": attachment.storage_path,
        "target_path": attachment.target_path,
        "cleanup_imports_after_run": attachment.cleanup_imports_after_run,
        "user_id": str(SANDBOX_USER_ID),
        "organization_id": ORGANIZATION_ID,
        "created_at": iso(attachment.created_at),
        "expires_at": iso(attachment.expires_at),
    }


def page_json(items: list, *, total: int, skip: int, limit: int, included=None) -> dict:
    data = {"items": items, "total": total, "skip": skip, "limit": limit}
    if included is not None:
        data["included"] = included
    return data
