"""The API's answers as small frozen dataclasses, parsed at the edge.

Parsing follows the SDK's models (`cyberdesk_cloud_client/models/*_response.py`): a key the SDK
requires is required here too and its absence raises `InvalidResponse` with the object and key
named; optional keys may be missing or null; unknown keys are ignored so a newer API does not
break us. Only the fields Launcher uses are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from launcher.cyberdesk.errors import InvalidResponse
from launcher.parsing import ParseError, json_parse

logger = logging.getLogger(__name__)

_MISSING = object()


def storable(value: Any) -> Any:
    """`value` (parsed JSON) with every U+0000 replaced by U+FFFD, in keys and strings alike.

    PostgreSQL stores U+0000 in neither text nor jsonb columns, and an agent's output (text
    read off a screen) may hold one: kept as is, the run or the webhook event carrying it could
    never be saved."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


class _Fields:
    """Typed access to one JSON object, with errors that say which object and which key.
    Every value read through it is `storable`."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise InvalidResponse(
                f"Cyberdesk sent a {what} that is not a JSON object ({type(data).__name__})."
            )
        self.data = data
        self.what = what

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or (required and value is None):
            if required:
                raise InvalidResponse(f"Cyberdesk sent a {self.what} without its '{key}' field.")
            return None
        return storable(value)

    def _wrong(self, key: str, expected: str, value: Any) -> InvalidResponse:
        return InvalidResponse(
            f"Cyberdesk sent a {self.what} whose '{key}' is not {expected} "
            f"(got {type(value).__name__})."
        )

    def str(self, key: str, *, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is not None and not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        return value

    def bool(self, key: str, *, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def int(self, key: str, *, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._wrong(key, "an integer", value)
        return value

    def float(self, key: str) -> float | None:
        value = self._get(key, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number", value)
        return float(value)

    def uuid(self, key: str, *, required: bool = False) -> UUID | None:
        value = self._get(key, required)
        if value is None:
            return None
        try:
            return UUID(str(value))
        except ValueError:
            raise self._wrong(key, "a UUID", value) from None

    def datetime(self, key: str, *, required: bool = False) -> datetime | None:
        value = self._get(key, required)
        if value is None:
            return None
        return parse_datetime(value, what=f"{self.what} '{key}'")

    def dict(self, key: str) -> dict | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return value

    def list(self, key: str) -> list:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "a list", value)
        return value

    def optional_list(self, key: str) -> list | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, list):
            raise self._wrong(key, "a list", value)
        return value

    def any(self, key: str) -> Any:
        return self._get(key, False)


def parse_datetime(value: Any, *, what: str = "timestamp") -> datetime:
    """ISO 8601 with `Z` or `+00:00` (Python 3.11's fromisoformat takes both); naive → UTC."""
    if not isinstance(value, str):
        raise InvalidResponse(f"Cyberdesk sent a {what} that is not a string.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidResponse(f"Cyberdesk sent a {what} that is not a date: {value!r}.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_json_schema(raw: Any, *, what: str) -> dict | None:
    """`input_schema`/`output_schema` arrive as JSON *strings*. A schema we cannot read is
    logged and treated as absent: the launch form then falls back to free-form inputs rather
    than the whole workflow failing to load."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, dict):  # tolerate an API that starts sending objects
        return raw
    try:
        parsed = json_parse(raw, replace_surrogates=True) if isinstance(raw, str) else None
    except ParseError:
        parsed = None
    if not isinstance(parsed, dict):
        logger.warning("Ignoring %s: it is not a JSON object", what)
        return None
    return parsed


@dataclass(frozen=True)
class ModelMetadata:
    """Model roles of a workflow or run; None means "the default" (workflow's or Cyberdesk's)."""

    main_agent_model_id: UUID | None = None
    cache_detection_model_id: UUID | None = None
    fallback_model_1_id: UUID | None = None
    fallback_model_2_id: UUID | None = None

    ROLES = (
        "main_agent_model_id",
        "cache_detection_model_id",
        "fallback_model_1_id",
        "fallback_model_2_id",
    )

    @classmethod
    def from_api(cls, data: Any) -> ModelMetadata | None:
        if data is None:
            return None
        fields = _Fields(data, "model_metadata")
        return cls(**{role: fields.uuid(role) for role in cls.ROLES})

    def to_api(self) -> dict[str, str | None]:
        """All four keys, always: whether PATCH merges or replaces is unconfirmed (spec §3.3)."""
        return {
            role: str(value) if (value := getattr(self, role)) is not None else None
            for role in self.ROLES
        }


@dataclass(frozen=True)
class Workflow:
    id: UUID
    name: str
    main_prompt: str
    input_schema: dict | None
    output_schema: dict | None
    model_metadata: ModelMetadata | None
    tags: list[str]
    is_webhooks_enabled: bool
    last_run_errored: bool  # workflow_metadata.has_unaddressed_error
    has_post_run_checks: bool
    created_at: datetime
    updated_at: datetime
    # When the unaddressed error's run started, and that run's id (None when there is none).
    last_errored_run_start: datetime | None = None
    last_errored_run_id: UUID | None = None

    @classmethod
    def from_api(cls, data: Any) -> Workflow:
        f = _Fields(data, "workflow")
        workflow_metadata = f.dict("workflow_metadata") or {}
        errored = workflow_metadata.get("has_unaddressed_error") is True
        metadata = _Fields(workflow_metadata, "workflow_metadata")
        tag_names = []
        for tag in f.list("tags"):
            name = tag.get("name") if isinstance(tag, dict) else None
            if isinstance(name, str):
                tag_names.append(name)
        return cls(
            id=f.uuid("id", required=True),
            name=f.str("name") or "",
            main_prompt=f.str("main_prompt", required=True),
            input_schema=_parse_json_schema(f.any("input_schema"), what="workflow input_schema"),
            output_schema=_parse_json_schema(f.any("output_schema"), what="workflow output_schema"),
            model_metadata=ModelMetadata.from_api(f.any("model_metadata")),
            tags=tag_names,
            is_webhooks_enabled=f.bool("is_webhooks_enabled"),
            last_run_errored=errored,
            has_post_run_checks=bool(f.list("post_run_checks")),
            created_at=f.datetime("created_at", required=True),
            updated_at=f.datetime("updated_at", required=True),
            # Only while the error is unaddressed: a cleared error names no run.
            last_errored_run_start=metadata.datetime("last_errored_run_start") if errored else None,
            last_errored_run_id=metadata.uuid("last_errored_run_uuid") if errored else None,
        )


@dataclass(frozen=True)
class ModelConfiguration:
    id: UUID
    name: str
    provider: str
    model: str
    description: str | None
    is_computer_use_model: bool
    is_archived: bool
    is_system_default: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_api(cls, data: Any) -> ModelConfiguration:
        f = _Fields(data, "model configuration")
        return cls(
            id=f.uuid("id", required=True),
            name=f.str("name", required=True),
            provider=f.str("provider", required=True),
            model=f.str("model", required=True),
            description=f.str("description"),
            is_computer_use_model=f.bool("is_computer_use_model"),
            is_archived=f.bool("is_archived"),
            is_system_default=f.bool("is_system_default"),
            created_at=f.datetime("created_at", required=True),
            updated_at=f.datetime("updated_at", required=True),
        )


@dataclass(frozen=True)
class Run:
    """A run as the API reports it. With a `fields=` projection only id, workflow_id,
    machine_id, status and created_at are guaranteed; the rest are then None or empty."""

    id: UUID
    workflow_id: UUID
    status: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    machine_id: UUID | None
    main_prompt: str | None
    model_metadata: ModelMetadata | None
    input_values: dict | None
    output_data: dict | None
    error: list[str]
    post_run_checks: list[dict]
    usage_metadata: dict | None
    sensitive_input_aliases: dict | None
    input_attachment_ids: list[str]
    output_attachment_ids: list[str]
    run_message_history: list | None
    is_priority: bool = False

    @classmethod
    def from_api(cls, data: Any) -> Run:
        f = _Fields(data, "run")
        return cls(
            id=f.uuid("id", required=True),
            workflow_id=f.uuid("workflow_id", required=True),
            # Kept as a string: an eighth status from a newer API should show, not crash.
            status=f.str("status", required=True),
            created_at=f.datetime("created_at", required=True),
            started_at=f.datetime("started_at"),
            ended_at=f.datetime("ended_at"),
            machine_id=f.uuid("machine_id"),
            main_prompt=f.str("main_prompt"),
            model_metadata=ModelMetadata.from_api(f.any("model_metadata")),
            input_values=f.dict("input_values"),
            output_data=f.any("output_data"),
            error=[str(message) for message in f.list("error")],
            post_run_checks=[
                check for check in f.list("post_run_checks") if isinstance(check, dict)
            ],
            usage_metadata=f.dict("usage_metadata"),
            sensitive_input_aliases=f.dict("sensitive_input_aliases"),
            input_attachment_ids=[str(i) for i in f.list("input_attachment_ids")],
            output_attachment_ids=[str(i) for i in f.list("output_attachment_ids")],
            run_message_history=f.optional_list("run_message_history"),
            is_priority=f.bool("is_priority"),
        )


@dataclass(frozen=True)
class RunPage:
    items: list[Run]
    total: int
    skip: int
    limit: int

    @classmethod
    def from_api(cls, data: Any) -> RunPage:
        f = _Fields(data, "run list")
        raw_items = f._get("items", True)
        if not isinstance(raw_items, list):
            raise f._wrong("items", "a list", raw_items)
        items = [Run.from_api(item) for item in raw_items]
        return cls(
            items=items,
            total=f.int("total", required=True),
            skip=f.int("skip") or 0,
            limit=f.int("limit") or len(items),
        )


@dataclass(frozen=True)
class LlmCosts:
    run_id: UUID
    total_cost_usd: float | None
    has_unpriced: bool
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def from_api(cls, data: Any) -> LlmCosts:
        f = _Fields(data, "LLM cost report")
        if "has_unpriced" not in f.data:
            raise InvalidResponse("Cyberdesk sent a LLM cost report without 'has_unpriced'.")
        return cls(
            run_id=f.uuid("run_id", required=True),
            total_cost_usd=f.float("total_cost_usd"),
            has_unpriced=f.bool("has_unpriced"),
            rows=[row for row in f.list("rows") if isinstance(row, dict)],
        )


@dataclass(frozen=True)
class Attachment:
    id: UUID
    run_id: UUID
    filename: str
    content_type: str
    attachment_type: str
    size_bytes: int
    created_at: datetime

    @classmethod
    def from_api(cls, data: Any) -> Attachment:
        f = _Fields(data, "run attachment")
        return cls(
            id=f.uuid("id", required=True),
            run_id=f.uuid("run_id", required=True),
            filename=f.str("filename", required=True),
            content_type=f.str("content_type", required=True),
            attachment_type=f.str("attachment_type", required=True),
            size_bytes=f.int("size_bytes", required=True),
            created_at=f.datetime("created_at", required=True),
        )


@dataclass(frozen=True)
class FileInput:
    """A file to copy onto the machine for a run; the client base64-encodes `content`."""

    filename: str
    content: bytes = field(repr=False)
    target_path: str | None = None
