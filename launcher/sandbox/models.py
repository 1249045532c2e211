"""The sandbox's own tables: what a Cyberdesk organisation holds, reduced to what Launcher uses.

String columns are nullable on purpose: they mirror API fields where null and "" differ
(e.g. a run's `main_prompt`: null means "the workflow's prompt", which "" is not).

Table names are prefixed `sandbox_` (app label "sandbox"), so they never collide with the
launcher's own `Workflow` or `Run`. Ids are UUIDs, like the real API's.
"""

# ruff: noqa: DJ001

import json
import uuid

from django.db import models
from django.utils import timezone

# Everything in the sandbox belongs to one organisation and one user.
ORGANIZATION_ID = "org_sandbox"
SANDBOX_USER_ID = uuid.UUID("5a4db0c5-0000-4000-8000-00000000a11c")


class RunStatus(models.TextChoices):
    SCHEDULING = "scheduling"
    RUNNING = "running"
    RUNNING_CHECKS = "running_checks"
    SUCCESS = "success"
    TASK_FAILED = "task_failed"
    ERROR = "error"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (RunStatus.SCHEDULING, RunStatus.RUNNING, RunStatus.RUNNING_CHECKS)
TERMINAL_STATUSES = (
    RunStatus.SUCCESS,
    RunStatus.TASK_FAILED,
    RunStatus.ERROR,
    RunStatus.CANCELLED,
)


class Scenario(models.TextChoices):
    """How runs of a workflow behave over time (see lifecycle.SCENARIO_TIMINGS)."""

    QUICK = "quick"
    SLOW = "slow"
    FLAKY = "flaky"
    FAILING_CHECK = "failing_check"


class ModelConfiguration(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=255)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.IntegerField(null=True, blank=True)
    timeout_seconds = models.FloatField(null=True, blank=True)
    max_retries = models.IntegerField(null=True, blank=True)
    additional_params = models.JSONField(null=True, blank=True)
    agent_harness_version_string = models.CharField(max_length=64, null=True, blank=True)
    is_computer_use_model = models.BooleanField(default=False)
    is_archived = models.BooleanField(default=False)
    is_system_default = models.BooleanField(default=False)
    # Sandbox-only pricing (USD per million tokens) used for LLM costs; null = "not priced yet",
    # which the real API reports as cost_usd null and has_unpriced true.
    input_usd_per_mtok = models.FloatField(null=True, blank=True)
    output_usd_per_mtok = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=100)
    description = models.TextField(null=True, blank=True)
    emoji = models.CharField(max_length=16, null=True, blank=True)
    color = models.CharField(max_length=16, null=True, blank=True)
    order = models.IntegerField(default=0)
    is_archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name


class Workflow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=255, null=True, blank=True)
    main_prompt = models.TextField()
    # JSON Schema kept as the string the API returns (it is a string on the wire).
    input_schema = models.TextField(null=True, blank=True)
    output_schema = models.TextField(null=True, blank=True)
    includes_file_exports = models.BooleanField(default=False)
    is_webhooks_enabled = models.BooleanField(default=False)
    terminal_command_allowlist = models.JSONField(null=True, blank=True)
    model_metadata = models.JSONField(null=True, blank=True)
    post_run_check_failure_cleanup_prompt = models.TextField(null=True, blank=True)
    workflow_metadata = models.JSONField(null=True, blank=True)
    old_versions = models.JSONField(default=list, blank=True)
    # Post-run check definitions, as the API returns them (list of objects with ids).
    post_run_checks = models.JSONField(default=list, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="workflows")
    # Sandbox-only: how its runs behave.
    scenario = models.CharField(max_length=20, choices=Scenario.choices, default=Scenario.QUICK)
    failure_rate = models.FloatField(default=0.0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.name or str(self.id)


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default="scheduling")
    machine_id = models.UUIDField(null=True, blank=True)
    is_priority = models.BooleanField(default=False)
    error = models.JSONField(null=True, blank=True)
    output_data = models.JSONField(null=True, blank=True)
    input_values = models.JSONField(null=True, blank=True)
    input_attachment_ids = models.JSONField(default=list, blank=True)
    output_attachment_ids = models.JSONField(default=list, blank=True)
    run_message_history = models.JSONField(null=True, blank=True)
    # The per-run prompt override (null = the workflow's prompt at execution time).
    main_prompt = models.TextField(null=True, blank=True)
    # Echo of the per-run model overrides, merged with the workflow's (null = no override).
    model_metadata = models.JSONField(null=True, blank=True)
    pool_ids = models.JSONField(null=True, blank=True)
    # Names of sensitive inputs → vault aliases. The values themselves are never stored.
    sensitive_input_aliases = models.JSONField(null=True, blank=True)
    usage_metadata = models.JSONField(null=True, blank=True)
    post_run_checks = models.JSONField(default=list, blank=True)
    session_id = models.UUIDField(null=True, blank=True)
    session_alias = models.CharField(max_length=255, null=True, blank=True)
    release_session_after = models.BooleanField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    # --- Sandbox-only bookkeeping -----------------------------------------------------------
    # The scenario plan chosen at creation (durations, outcome); see lifecycle.run_plan.
    plan = models.JSONField(default=dict, blank=True)
    # When the current attempt's clock started (creation, or the latest retry).
    plan_started_at = models.DateTimeField(default=timezone.now)
    # When the next status change is due; null once terminal. Indexed: the driver scans it.
    next_transition_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempt = models.PositiveIntegerField(default=1)
    # LLM cost rows (list of dicts) accumulated by the simulated agent.
    llm_cost_rows = models.JSONField(default=list, blank=True)
    # Lower-cased text searched by `search` / `deep_search` (kept in sync by save()).
    search_document = models.TextField(default="", blank=True)
    deep_search_document = models.TextField(default="", blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    def save(self, *args, **kwargs):
        self.search_document = " ".join(
            [
                str(self.id),
                _json_text(self.input_values),
                _json_text(self.output_data),
                _json_text(self.error),
                self.session_alias or "",
            ]
        ).lower()
        self.deep_search_document = _json_text(self.run_message_history).lower()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {
                *kwargs["update_fields"],
                "search_document",
                "deep_search_document",
            }
        super().save(*args, **kwargs)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _json_text(value) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


class AttachmentType(models.TextChoices):
    INPUT = "input"
    OUTPUT = "output"


class RunAttachment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    attachment_type = models.CharField(max_length=10, choices=AttachmentType.choices)
    content = models.BinaryField()
    size_bytes = models.PositiveIntegerField(default=0)
    target_path = models.CharField(max_length=1024, null=True, blank=True)
    cleanup_imports_after_run = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "filename"]

    def __str__(self) -> str:
        return self.filename

    @property
    def storage_path(self) -> str:
        return f"{ORGANIZATION_ID}/runs/{self.run_id}/{self.attachment_type}/{self.filename}"


class IdempotencyRecord(models.Model):
    """One `Idempotency-Key` seen on a write, with the response to replay."""

    key = models.CharField(max_length=255, unique=True)
    # HMAC of method, path and body: identifies "the same request" without keeping the body
    # (which may hold sensitive input values).
    request_fingerprint = models.CharField(max_length=64)
    in_progress = models.BooleanField(default=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.key


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """An outgoing `run_complete` event (an outbox row): created with the terminal transition,
    sent by the driver, retried with backoff until a 2xx or the schedule runs out."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    # Stable across attempts: the receiver dedupes on it (svix-id).
    message_id = models.CharField(max_length=64, unique=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="webhook_deliveries")
    # The exact JSON body, frozen at the transition so every attempt sends the same bytes.
    payload = models.TextField()
    url = models.CharField(max_length=1024)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(default="", blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.url} ({self.status})"
