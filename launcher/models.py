"""Launcher's own tables.

The Cyberdesk API stays the source of truth for workflows, model configurations and run state;
Launcher keeps local mirrors of the first two (so that runs, versions and labels can point at
them) and the full history of what it launched and which prompt version it used.
"""

import hashlib
import uuid

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q

from launcher import failures


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Workflow(models.Model):
    """A local mirror of an upstream workflow (synced from the API, never edited here)."""

    id = models.UUIDField(primary_key=True, help_text="The workflow's id in Cyberdesk.")
    name = models.CharField(max_length=255, blank=True)
    main_prompt = models.TextField(blank=True, help_text="The prompt stored on the workflow.")
    input_schema = models.JSONField(null=True, blank=True, help_text="Parsed JSON Schema.")
    model_metadata = models.JSONField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True, help_text="Tag names.")
    # The API's workflow_metadata: an error nobody has addressed yet, since when, and its run
    # (set and cleared by every sync, as the API says).
    last_run_errored = models.BooleanField(default=False)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_run_id = models.UUIDField(
        null=True, blank=True, help_text="The errored run's id in Cyberdesk."
    )
    has_post_run_checks = models.BooleanField(default=False)
    upstream_updated_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name or str(self.id)


class ModelOption(models.Model):
    """An upstream model configuration, and whether staff offer it to operators here."""

    id = models.UUIDField(primary_key=True, help_text="The model configuration's id in Cyberdesk.")
    name = models.CharField(max_length=255)
    provider = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=255, blank=True, help_text="The provider's model id.")
    description = models.TextField(blank=True)
    is_computer_use = models.BooleanField(default=False)
    is_archived_upstream = models.BooleanField(default=False)
    is_system_default = models.BooleanField(default=False)
    present_upstream = models.BooleanField(
        default=True, help_text="False once the API stopped listing it."
    )
    enabled = models.BooleanField(default=True, help_text="Offered to operators (staff decide).")
    price_input_per_million = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="USD per 1M input tokens."
    )
    price_output_per_million = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="USD per 1M output tokens.",
    )
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_offered(self) -> bool:
        return (
            self.is_computer_use
            and not self.is_archived_upstream
            and self.present_upstream
            and self.enabled
        )


class ModelOptionChange(models.Model):
    """Who enabled or disabled a model, and when."""

    model_option = models.ForeignKey(ModelOption, on_delete=models.CASCADE, related_name="changes")
    enabled = models.BooleanField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.model_option_id} {'enabled' if self.enabled else 'disabled'}"


class PromptVersionImmutable(Exception):
    """Raised when code tries to change a saved prompt version."""


class PromptVersion(models.Model):
    """One immutable version of a workflow's prompt, numbered 1, 2, 3… per workflow."""

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="prompt_versions")
    number = models.PositiveIntegerField(editable=False)
    text = models.TextField()
    sha256 = models.CharField(max_length=64, editable=False)
    note = models.CharField(max_length=500, blank=True)
    # The text came from the workflow's stored prompt (an editor's import, or a run launched
    # with the stored prompt whose text Launcher had no version of), not from an editor.
    imported_from_workflow = models.BooleanField(default=False)
    based_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # False while the text uses variables the workflow's schema lacks ({patient_nme}) and no
    # editor has confirmed them ("Save with unknown variables"): such a version is never
    # "Latest" (a typo must not reach every run that asks for the latest prompt).
    variables_confirmed = models.BooleanField(default=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "number"], name="prompt_version_number_unique"
            )
        ]

    def __str__(self) -> str:
        return f"v{self.number}"

    def save(self, *args, **kwargs):
        # Runs record which version they used: a saved version must never change, or that
        # record would lie. "Editing" saves a new version (launcher.services.prompts).
        if not self._state.adding and set(kwargs.get("update_fields") or ()) != {
            "variables_confirmed"
        }:
            # (Confirming its variables is the one change allowed: the text stays as it was.)
            raise PromptVersionImmutable("A saved prompt version never changes; save a new one.")
        self.sha256 = sha256_text(self.text)
        super().save(*args, **kwargs)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


class PromptLabel(models.Model):
    """A named pointer (production, staging, …) at one version of a workflow's prompt."""

    PRODUCTION = "production"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="prompt_labels")
    name = models.SlugField(max_length=50)
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="labels")
    # A protected label moves only on evidence (launcher.services.promotion), or with a written
    # reason by someone who may promote without evidence. `production` is created protected.
    protected = models.BooleanField(
        default=False,
        help_text="Moves need evidence from real runs (or an override with a reason).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="prompt_label_name_unique"),
            # "latest" is derived (the newest version), never stored.
            models.CheckConstraint(condition=~Q(name="latest"), name="prompt_label_not_latest"),
        ]
        permissions = [
            ("move_production_label", "Can move the production label"),
            ("promote_without_evidence", "May promote without evidence (with a written reason)"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # `production` is protected by default, however it is created.
        if self._state.adding and self.name == self.PRODUCTION:
            self.protected = True
        super().save(*args, **kwargs)


class PromptLabelMove(models.Model):
    """The history of a label: who moved it, when, from which version to which, and why."""

    label = models.ForeignKey(PromptLabel, on_delete=models.CASCADE, related_name="moves")
    from_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    moved_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=500, blank=True)
    # The evidence a protected label moved on: a batch or a canary, and a snapshot of the
    # numbers and the test as shown to the person who moved it (the runs may change later).
    evidence_batch = models.ForeignKey(
        "Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evidence_canary = models.ForeignKey(
        "Canary", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evidence = models.JSONField(null=True, blank=True)
    without_evidence = models.BooleanField(
        default=False, help_text="Moved by an override, with a reason, without enough evidence."
    )

    class Meta:
        ordering = ["-moved_at"]

    def __str__(self) -> str:
        # The label's name and this move's own versions: never the label's current target.
        from_text = f"v{self.from_version.number}" if self.from_version_id else "—"
        return f"{self.label.name}: {from_text} → v{self.to_version.number}"


class Batch(models.Model):
    """A group of runs launched together: rows × models × prompt choices."""

    class State(models.TextChoices):
        SUBMITTING = "submitting", "Submitting"
        SUBMITTED = "submitted", "Submitted"
        CANCELLED = "cancelled", "Cancelled"

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="batches")
    name = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.SUBMITTING)
    is_matrix = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="batches"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # "Cancel the rest" / "Retry failed runs" were asked for and the worker has not finished
    # them yet (set by the request, cleared by the task): the batch page polls while either is set.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    retry_requested_at = models.DateTimeField(null=True, blank=True)
    # How many runs the batch has: set by the plan that inserts them (and by a single-run
    # insert into a batch, `Run.save()`), so the batches list never counts a batch's runs. A
    # batch's runs never change in number after planning: a retry or a cancel changes a run in
    # place, and nothing deletes one but the batch itself.
    run_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["-created_at"], name="batch_created")]

    def __str__(self) -> str:
        return self.name or f"Batch {self.pk}"


class Canary(models.Model):
    """A protected label sending a share of its launches to a candidate version.

    Routing: `launcher.services.canary.canary_route`; evaluation and stopping:
    `canaries_evaluate` (each reconciler pass). At most one running canary per label.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        PROMOTED = "promoted", "Promoted"

    label = models.ForeignKey(PromptLabel, on_delete=models.CASCADE, related_name="canaries")
    control_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    candidate_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    share_percent = models.PositiveSmallIntegerField(
        help_text="Share of the label's launches sent to the candidate (1–50 %)."
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=500, blank=True)
    # Every look the evaluation took: {"look", "at", "candidate": [s, n], "control": [s, n],
    # "p_value", "alpha"} — the record of why it stopped (or kept going).
    looks = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["label"],
                condition=Q(state="running"),
                name="canary_one_running_per_label",
            ),
            models.CheckConstraint(
                condition=Q(share_percent__gte=1) & Q(share_percent__lte=50),
                name="canary_share_1_to_50",
            ),
        ]

    def __str__(self) -> str:
        return f"Canary {self.pk}"


class RunStatus(models.TextChoices):
    # Local states, before the API has the run.
    PENDING = "pending", "Pending"  # stored here, not yet accepted by the API
    REJECTED = "rejected", "Rejected"  # the API refused it; nothing runs
    # Upstream states (spec §2.1).
    SCHEDULING = "scheduling", "Scheduling"
    RUNNING = "running", "Running"
    RUNNING_CHECKS = "running_checks", "Running checks"
    SUCCESS = "success", "Success"
    TASK_FAILED = "task_failed", "Task failed"
    ERROR = "error", "Error"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset(
    {
        RunStatus.REJECTED,
        RunStatus.SUCCESS,
        RunStatus.TASK_FAILED,
        RunStatus.ERROR,
        RunStatus.CANCELLED,
    }
)
# Status only moves forward: a lower rank never overwrites a higher one (retry excepted,
# which starts a new attempt explicitly).
STATUS_RANK = {
    RunStatus.PENDING: 0,
    RunStatus.SCHEDULING: 1,
    RunStatus.RUNNING: 2,
    RunStatus.RUNNING_CHECKS: 3,
    RunStatus.SUCCESS: 4,
    RunStatus.TASK_FAILED: 4,
    RunStatus.ERROR: 4,
    RunStatus.CANCELLED: 4,
    RunStatus.REJECTED: 4,
}


class PromptMode(models.TextChoices):
    STORED = "stored", "Workflow's stored prompt"
    LATEST = "latest", "Latest version"
    LABEL = "label", "Label"
    PINNED = "pinned", "Pinned version"


class Submission(models.TextChoices):
    QUEUED = "queued", "Queued"  # stored with its idempotency key, not sent yet
    ACCEPTED = "accepted", "Accepted"  # the API returned the run
    UNKNOWN = "unknown", "Outcome unknown"  # sent, no answer: the reconciler settles it
    REJECTED = "rejected", "Rejected"  # the API refused it


class AttemptOutcome:
    """What a run and a kept attempt both answer from their `status`, `started_at` and
    `ended_at` (templates take either; see RunAttempt)."""

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self):
        if self.started_at and self.ended_at:
            return self.ended_at - self.started_at
        return None


def run_duration_ms(*, started_at, ended_at) -> int | None:
    """A run's stored duration (`Run.duration_ms`): whole milliseconds, None while an end is
    unknown. One function for save() and for the bulk writes that skip it."""
    if started_at is None or ended_at is None:
        return None
    return round((ended_at - started_at).total_seconds() * 1000)


def _usage_number(usage_metadata, key: str) -> float | None:
    value = usage_metadata.get(key) if isinstance(usage_metadata, dict) else None
    # As the JSON aggregates read it: a JSON number only (true/false are not counts).
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def run_cell_numbers(*, post_run_checks, usage_metadata) -> dict:
    """A run's numbers for the batch grid (`Run.checks_passed` … `Run.cached_steps`), stored
    so the grid sums an index instead of parsing every run's JSON. One function for save()
    and for the bulk writes that skip it."""
    checks = (
        [c for c in post_run_checks or [] if isinstance(c, dict)]
        if isinstance(post_run_checks, list)
        else []
    )
    return {
        "checks_passed": sum(1 for c in checks if c.get("status") == "success"),
        "checks_failed": sum(1 for c in checks if c.get("status") == "failed"),
        "agentic_steps": _usage_number(usage_metadata, "total_agentic_steps"),
        "cached_steps": _usage_number(usage_metadata, "total_cached_steps"),
    }


class Run(AttemptOutcome, models.Model):
    """One run Launcher launched, with the three choices it carried and its last known state."""

    idempotency_key = models.UUIDField(
        unique=True,
        default=uuid.uuid4,
        editable=False,
        help_text="Stored before sending; every (re)send of this run uses it.",
    )
    cyberdesk_id = models.UUIDField(null=True, blank=True, unique=True)
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="runs")
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    batch_row = models.PositiveIntegerField(null=True, blank=True)

    # Choice 1: the model (null = workflow default, no override sent).
    model_option = models.ForeignKey(
        ModelOption, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    # Choice 2: the prompt, as chosen and as resolved at launch.
    prompt_mode = models.CharField(max_length=10, choices=PromptMode.choices)
    prompt_label = models.CharField(max_length=50, blank=True)
    prompt_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    prompt_sha256 = models.CharField(max_length=64, blank=True)
    # When the label resolved had a running canary: which one, and the arm this run took
    # (picked from its idempotency key, so a re-send or re-plan takes the same arm).
    canary = models.ForeignKey(
        Canary, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    canary_arm = models.CharField(
        max_length=10,
        blank=True,
        choices=[("control", "Control"), ("candidate", "Candidate")],
    )
    # Choice 3: the inputs. Sensitive values are never stored: only their keys.
    input_values = models.JSONField(default=dict, blank=True)
    sensitive_input_keys = models.JSONField(default=list, blank=True)
    file_input_names = models.JSONField(default=list, blank=True)
    # [{"field": schema key, "filename": name}]: which input each file was (names only).
    file_input_fields = models.JSONField(default=list, blank=True)
    is_priority = models.BooleanField(default=False)

    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="runs"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    submission = models.CharField(
        max_length=10, choices=Submission.choices, default=Submission.QUEUED
    )
    submission_error = models.TextField(blank=True)
    submission_attempts = models.PositiveSmallIntegerField(default=0)

    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True
    )
    attempt = models.PositiveSmallIntegerField(default=1, help_text="Bumped by each retry.")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    output_data = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    post_run_checks = models.JSONField(default=list, blank=True)
    usage_metadata = models.JSONField(null=True, blank=True)
    message_history = models.JSONField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # The finished attempt's attachments (id, filename, content_type, attachment_type,
    # size_bytes), fetched once by the worker when the run finishes, so the run page never waits
    # on the API for them. None = not fetched yet (a retry clears it for the new attempt).
    attachments = models.JSONField(null=True, blank=True)
    # Answers of the API that Launcher did not expect (e.g. a cancel that left the run running,
    # or "cancelled" for a run that had already finished): [{"at", "action", "message"}], shown
    # on the run page. The API's docs leave such cases open, so they are recorded, not guessed.
    api_notes = models.JSONField(default=list, blank=True)
    # Compare-and-set guard: at most one upstream refresh per interval across all processes.
    synced_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Why it failed, normalised (launcher.failures): kept by save() so that the batch page's
    # failure clusters are one GROUP BY, not a scan of every failed run's errors.
    failure_key = models.CharField(
        max_length=failures.KEY_MAX_LENGTH, blank=True, default="", editable=False
    )
    # ended_at - started_at in whole milliseconds, kept by save() (and by the bulk paths that
    # skip it) so that medians and percentiles read an index in order instead of computing
    # and sorting every run's duration. None while either end is unknown.
    duration_ms = models.BigIntegerField(null=True, blank=True, editable=False)
    # The batch grid's per-run numbers from post_run_checks and usage_metadata, kept like
    # duration_ms (`run_cell_numbers`), so a batch's grid is an index-only GROUP BY
    # (run_batch_cell_duration covers them) instead of reading every run's JSON.
    checks_passed = models.PositiveSmallIntegerField(default=0, editable=False)
    checks_failed = models.PositiveSmallIntegerField(default=0, editable=False)
    agentic_steps = models.FloatField(null=True, blank=True, editable=False)
    cached_steps = models.FloatField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("launch_run", "Can launch runs")]
        # The runs list is keyset-paginated on (created_at, id), newest first: each filter has
        # an index that ends in that order, so a page is an index range scan of 51 entries
        # whatever the history (EXPLAIN on SQLite and PostgreSQL: docs/benchmarks.md).
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="run_created_id"),
            models.Index(fields=["workflow", "-created_at", "-id"], name="run_workflow_created"),
            models.Index(fields=["status", "-created_at", "-id"], name="run_status_created"),
            models.Index(fields=["model_option", "-created_at", "-id"], name="run_model_created"),
            models.Index(
                fields=["prompt_version", "-created_at", "-id"], name="run_prompt_created"
            ),
            models.Index(fields=["prompt_mode", "-created_at", "-id"], name="run_mode_created"),
            models.Index(fields=["prompt_label", "-created_at", "-id"], name="run_label_created"),
            models.Index(fields=["launched_by", "-created_at", "-id"], name="run_user_created"),
            models.Index(fields=["batch", "-created_at", "-id"], name="run_batch_created"),
            # Batch progress counts: an index-only GROUP BY over one batch's runs.
            models.Index(fields=["batch", "status", "submission"], name="run_batch_status"),
            # The batches list: a batch's queued runs, a seek however many it has sent.
            models.Index(fields=["batch", "submission"], name="run_batch_submission"),
            # The batch page: its "By input row" pages and its failure clusters.
            models.Index(fields=["batch", "batch_row"], name="run_batch_row"),
            # Failure clusters: the batch's failed runs (status IN failed) by key, index-only
            # for the totals and the largest clusters (cyberdesk_id: "retryable"), and a seek
            # for the runs still without a key.
            models.Index(
                fields=["batch", "status", "failure_key", "cyberdesk_id"],
                name="run_batch_failed_key",
            ),
            # The prompts page's medians: per version, the durations in order (SQLite reads
            # the middle entries by offset, PostgreSQL's percentile_cont an index-only scan).
            models.Index(
                fields=["workflow", "prompt_version", "duration_ms"], name="run_version_duration"
            ),
            # The batch grid's median and p90 per (model, version) cell, read by ordered
            # offset; status next so the outcome filter is checked on the index entries (the
            # index covers the query). Not a partial index: SQLite cannot match a condition
            # against a parametrised `status IN (?, ?, ?)` and would read every row instead.
            # The cell numbers after it make the grid's GROUP BY index-only too.
            models.Index(
                fields=[
                    "batch",
                    "model_option",
                    "prompt_version",
                    "duration_ms",
                    "status",
                    "cost_usd",
                    "checks_passed",
                    "checks_failed",
                    "agentic_steps",
                    "cached_steps",
                ],
                name="run_batch_cell_duration",
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk}"

    # What the failure key is derived from: a save() that writes any of them writes the key too.
    _FAILURE_SOURCES = frozenset({"status", "errors", "post_run_checks"})
    _DURATION_SOURCES = frozenset({"started_at", "ended_at"})
    _CELL_SOURCES = frozenset({"post_run_checks", "usage_metadata"})
    _CELL_FIELDS = ("checks_passed", "checks_failed", "agentic_steps", "cached_steps")

    def save(self, *args, **kwargs):
        # Every status change goes through save() (run_sync's locked update) or the bulk write
        # that calls derived_refresh too, so the derived columns never lag the run.
        update_fields = kwargs.get("update_fields")
        derived = self.derived_refresh(update_fields or ())
        if update_fields is not None and derived:
            kwargs["update_fields"] = {*update_fields, *derived}
        if not self._state.adding or (self.prompt_version_id is None and self.batch_id is None):
            super().save(*args, **kwargs)
            return
        # Every single-row insert (a launch) is counted on its version's counters in the
        # inserting transaction; later changes are counted by run_sync, the one place statuses
        # move. (Bulk inserts count themselves: see services/rollups.)
        from launcher.services.rollups import rollups_count_launched

        with transaction.atomic():
            super().save(*args, **kwargs)
            rollups_count_launched([self])

    def derived_refresh(self, changed=()) -> set[str]:
        """Recompute the stored derived columns (duration, failure key, the grid's cell
        numbers) from the values in memory, like PromptVersion.sha256; return the names of
        those whose sources are among `changed`, which a write of `changed` must write too.
        save() calls it, and so does run_sync's bulk write, which bypasses save()."""
        self.duration_ms = run_duration_ms(started_at=self.started_at, ended_at=self.ended_at)
        self.failure_key = failures.failure_key(
            status=self.status, errors=self.errors, post_run_checks=self.post_run_checks
        )
        numbers = run_cell_numbers(
            post_run_checks=self.post_run_checks, usage_metadata=self.usage_metadata
        )
        for field, value in numbers.items():
            setattr(self, field, value)
        changed = set(changed)
        derived: set[str] = set()
        if self._FAILURE_SOURCES & changed:
            derived.add("failure_key")
        if self._DURATION_SOURCES & changed:
            derived.add("duration_ms")
        if self._CELL_SOURCES & changed:
            derived.update(self._CELL_FIELDS)
        return derived


class PromptVersionRollup(models.Model):
    """How a prompt version's runs went, kept as counters so the prompts page reads one row per
    version instead of grouping every run of the workflow (`version_stats`).

    Kept exact by `launcher.services.rollups` (this counter: `services/prompt_rollups`), with
    F() increments in the same transaction as the change they count (a launch, an upstream
    answer, a cost). Each run counts once, as its current (latest) attempt: a retry takes the
    finished attempt's outcome, cost and steps back out, and the new attempt adds its own when
    it ends. `rollups_rebuild` recomputes every row from the runs.
    """

    prompt_version = models.OneToOneField(
        PromptVersion, on_delete=models.CASCADE, primary_key=True, related_name="rollup"
    )
    runs = models.BigIntegerField(default=0)
    finished = models.BigIntegerField(default=0)  # reached an outcome: success/task failed/error
    succeeded = models.BigIntegerField(default=0)
    # Costs in millionths of a dollar (Run.cost_usd has 6 decimals): integer sums stay exact
    # on SQLite, where decimal arithmetic goes through floats.
    cost_micro_usd = models.BigIntegerField(default=0)
    cost_runs = models.BigIntegerField(default=0)  # runs with a known cost (the mean's divisor)
    cached_steps = models.BigIntegerField(default=0)
    agentic_steps = models.BigIntegerField(default=0)
    timed = models.BigIntegerField(default=0)  # runs with a duration: where the median sits
    first_used = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Rollup of version {self.prompt_version_id}"


class PromptVersionDurationBucket(models.Model):
    """How many of a prompt version's timed runs fall in one duration bucket (log-spaced,
    `services/prompt_rollups.DURATION_EDGES_MS`), kept beside `PromptVersionRollup` and
    exactly like it, so a median is found by reading these few rows and then walking one
    bucket's durations, not every duration of the version (`version_stats.version_medians`).
    A row is made the first time a run lands in its bucket; one whose runs left keeps 0."""

    # No index of its own: the unique (prompt_version, bucket) index starts with it.
    prompt_version = models.ForeignKey(
        PromptVersion, on_delete=models.CASCADE, related_name="duration_buckets", db_index=False
    )
    bucket = models.PositiveSmallIntegerField()
    runs = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The increments' upsert (ON CONFLICT) and the medians' read both go through it.
            models.UniqueConstraint(
                fields=["prompt_version", "bucket"], name="prompt_version_duration_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"Version {self.prompt_version_id}, bucket {self.bucket}: {self.runs} runs"


class BatchCellRollup(models.Model):
    """How one cell of a batch's grid (a model option, or the workflow default, × a prompt
    version, or the stored prompt) went, kept as counters so the batch page reads one row per
    cell instead of grouping every run of the batch (`launcher.batch_grid`).

    Kept exact by `launcher.services.rollups` (this counter: `services/batch_cell_rollups`)
    with the prompt counters (`PromptVersionRollup`), by the same calls, with F() increments in
    the same transactions: each run counts once, as its current attempt. `rollups_rebuild`
    recomputes every row."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="cell_rollups")
    # The cell's `batch_grid.cell_key` ("<model uuid>|default:<version pk>|stored"): unique per
    # batch where the two nullable keys cannot be (NULLs are distinct in a unique index).
    cell = models.CharField(max_length=80)
    model_option = models.ForeignKey(
        ModelOption, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    prompt_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    runs = models.BigIntegerField(default=0)
    outcomes = models.BigIntegerField(default=0)  # success / task failed / error
    succeeded = models.BigIntegerField(default=0)
    checks_passed = models.BigIntegerField(default=0)
    checks_settled = models.BigIntegerField(default=0)  # passed + failed
    cost_runs = models.BigIntegerField(default=0)  # runs with a known cost (the mean's divisor)
    # In millionths of a dollar, as PromptVersionRollup: integer sums stay exact on SQLite.
    cost_micro_usd = models.BigIntegerField(default=0)
    # Sums of the runs' stored step numbers (`Run.agentic_steps`, floats as the API reports
    # them) and how many runs reported one (the means' divisors).
    agentic_steps = models.FloatField(default=0)
    agentic_runs = models.BigIntegerField(default=0)
    cached_steps = models.FloatField(default=0)
    cached_runs = models.BigIntegerField(default=0)
    timed = models.BigIntegerField(default=0)  # outcomes with a duration: where the median sits

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "cell"], name="batch_cell_rollup_unique")
        ]

    def __str__(self) -> str:
        return f"Batch {self.batch_id} cell {self.cell}"


class BatchChunk(models.Model):
    """A slice of a batch's runs (ids `first_run_id`..`last_run_id` of that batch) that one
    sender works on at a time. Any worker may claim an open chunk whose lease is free; the
    holder renews the lease while it sends, so a chunk whose worker died is free again as soon
    as its lease runs out (`launcher/services/batches/chunks.py`)."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    first_run_id = models.BigIntegerField()
    last_run_id = models.BigIntegerField()
    size = models.PositiveIntegerField()
    lease_until = models.DateTimeField(null=True, blank=True)  # held by `holder` until then
    holder = models.CharField(max_length=64, blank=True)
    claims = models.PositiveIntegerField(default=0)  # > 1: taken over after a lease ran out
    done_at = models.DateTimeField(null=True, blank=True)  # every run in it left `queued`

    class Meta:
        ordering = ["batch", "number"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "number"], name="batch_chunk_number"),
        ]
        indexes = [
            # The open chunks, for claims and for the reconciler's look for stalled batches.
            models.Index(
                fields=["batch", "number"],
                condition=Q(done_at__isnull=True),
                name="batch_chunk_open",
            ),
        ]

    def __str__(self) -> str:
        return f"Batch {self.batch_id} chunk {self.number}"


class WebhookEvent(models.Model):
    """Each delivered webhook, recorded once (the unique id makes redeliveries no-ops)."""

    event_id = models.CharField(max_length=100, unique=True)
    event_type = models.CharField(max_length=50)
    cyberdesk_run_id = models.UUIDField(null=True, blank=True, db_index=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    applied = models.BooleanField(default=False, help_text="Whether it changed the run.")

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class RunRecordImmutable(Exception):
    """Raised when code tries to change a saved attempt or history entry."""


class RunAttempt(AttemptOutcome, models.Model):
    """A finished attempt of a run, kept before a retry starts the next one.

    The API retries in place (same id) and clears the outputs, so this copy is the only place
    an earlier attempt survives. The current attempt lives on the `Run` row itself; this table
    holds only attempts a retry has closed. A saved attempt never changes.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=20, choices=RunStatus.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    output_data = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    post_run_checks = models.JSONField(default=list, blank=True)
    usage_metadata = models.JSONField(null=True, blank=True)
    message_history = models.JSONField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # [{id, filename, content_type, attachment_type, size_bytes}]; None when the list could not
    # be read from the API when the attempt was closed.
    attachments = models.JSONField(null=True, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="run_attempt_number_unique")
        ]

    def __str__(self) -> str:
        return f"Run {self.run_id} attempt {self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RunRecordImmutable("A kept attempt never changes.")
        super().save(*args, **kwargs)


class RunEvent(models.Model):
    """One entry of a run's history: what happened, where the news came from, who did it."""

    class Kind(models.TextChoices):
        LAUNCHED = "launched", "Launched"
        ACCEPTED = "accepted", "Accepted by Cyberdesk"
        REJECTED = "rejected", "Refused by Cyberdesk"
        OUTCOME_UNKNOWN = "outcome_unknown", "Launch outcome unknown"
        STATUS = "status", "Status changed"
        CANCEL_REQUESTED = "cancel_requested", "Cancel requested"
        RETRIED = "retried", "Retried"
        WEBHOOK = "webhook", "Webhook received"

    class Source(models.TextChoices):
        USER = "user", "user"
        LAUNCHER = "launcher", "launcher"
        POLL = "poll", "poll"
        WEBHOOK = "webhook", "webhook"
        RECONCILER = "reconciler", "reconciler"
        BATCH = "batch", "batch sender"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    attempt = models.PositiveSmallIntegerField(default=1)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(db_index=False)

    class Meta:
        ordering = ["run", "at", "id"]
        indexes = [models.Index(fields=["run", "at"], name="run_event_run_at")]

    def __str__(self) -> str:
        return f"Run {self.run_id} {self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RunRecordImmutable("A history entry never changes.")
        super().save(*args, **kwargs)


class CacheVersion(models.Model):
    """A number bumped, in the writing transaction, whenever what a cached list is made of
    changes (`launcher/cache_versions.py`). Kept in the database, not the cache: the default
    cache is per process, and a change made in one process (or by the worker) must reach the
    others' next request, never after a timeout."""

    name = models.CharField(max_length=50, primary_key=True)
    number = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} v{self.number}"
