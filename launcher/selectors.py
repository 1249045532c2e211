"""The read side: queries that pages and services share. No writes, no API calls.

Grouped by subject; each group says who uses it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from launcher.cache_versions import RUN_FILTER_CHOICES, cache_version
from launcher.models import (
    TERMINAL_STATUSES,
    AttemptOutcome,
    Batch,
    BatchCellRollup,
    ModelOption,
    PromptLabel,
    PromptMode,
    PromptVersion,
    Run,
    RunStatus,
    Submission,
    Workflow,
)
from launcher.services.prompts import prompt_variable_warnings

# --- Model catalog (models page, launch page) ---------------------------------------------------

CYBERDESK_DEFAULT = "Cyberdesk default"


def models_offered() -> QuerySet[ModelOption]:
    """Models operators may pick as the main agent: computer-use, not archived upstream, still
    listed upstream, and enabled by staff. (Call `models_sync_if_stale()` first for freshness.)"""
    return ModelOption.objects.filter(
        is_computer_use=True, is_archived_upstream=False, present_upstream=True, enabled=True
    ).order_by("name")


def model_default_name(workflow: Workflow | None) -> str:
    """The name of the model a run uses without an override, for "Workflow default (<name>)":
    the workflow's main agent model, else the system default computer-use model, else
    "Cyberdesk default"."""
    metadata = (workflow.model_metadata if workflow else None) or {}
    main_agent_id = metadata.get("main_agent_model_id") if isinstance(metadata, dict) else None
    if main_agent_id:
        name = ModelOption.objects.filter(pk=main_agent_id).values_list("name", flat=True).first()
        if name:
            return name
    system_default = (
        ModelOption.objects.filter(is_system_default=True, present_upstream=True)
        .order_by("-is_computer_use", "name")
        .values_list("name", flat=True)
        .first()
    )
    return system_default or CYBERDESK_DEFAULT


def model_catalog() -> QuerySet[ModelOption]:
    """Every model configuration, with how many runs used it (`runs_used`), for staff."""
    return ModelOption.objects.annotate(runs_used=Count("runs")).order_by(
        "-present_upstream", "-is_computer_use", "name"
    )


# --- Prompt choices (launch page, batches) ------------------------------------------------------

WARNING_MARK = "⚠"


def prompt_choices(workflow: Workflow) -> list[tuple[str, str]]:
    """The prompt choices for a workflow as (value, display) pairs, in picker order:

    the stored prompt, latest, each label, then every version newest first. A choice whose
    text has variable problems (see `prompt_variable_warnings`) ends with " ⚠". Two queries.
    """
    versions = list(PromptVersion.objects.filter(workflow=workflow).order_by("-number"))
    labels = list(PromptLabel.objects.filter(workflow=workflow).order_by("name"))
    by_id = {version.pk: version for version in versions}

    def mark(text: str) -> str:
        return f" {WARNING_MARK}" if prompt_variable_warnings(workflow, text) else ""

    choices = [("stored", str(PromptMode.STORED.label) + mark(workflow.main_prompt))]
    # "Latest" is the newest version whose variables are confirmed (prompt_latest_version).
    newest = next((version for version in versions if version.variables_confirmed), None)
    if newest is not None:
        flag = mark(newest.text)
        choices.append(("latest", f"Latest (v{newest.number}){flag}"))
    for label in labels:
        version = by_id.get(label.version_id)
        if version is not None:
            choices.append(
                (f"label:{label.name}", f"{label.name} (v{version.number}){mark(version.text)}")
            )
    for version in versions:
        note = f" — {version.note}" if version.note else ""
        choices.append((f"version:{version.pk}", f"v{version.number}{note}{mark(version.text)}"))
    return choices


def prompt_choice_default(workflow: Workflow) -> str:
    """The production label when the workflow has one, else its stored prompt."""
    has_production = PromptLabel.objects.filter(
        workflow=workflow, name=PromptLabel.PRODUCTION
    ).exists()
    return f"label:{PromptLabel.PRODUCTION}" if has_production else "stored"


# --- Prompt pages (prompts index and per-workflow page) -----------------------------------------
# The per-version numbers (`prompt_version_stats`) live in launcher/version_stats.py.


def prompt_workflows() -> QuerySet[Workflow]:
    """Workflows with `version_count` and their labels (with versions) prefetched."""
    return Workflow.objects.annotate(version_count=Count("prompt_versions")).prefetch_related(
        Prefetch(
            "prompt_labels",
            queryset=PromptLabel.objects.select_related("version").order_by("name"),
        )
    )


_OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)


@dataclass(frozen=True)
class DiffRow:
    """One line of a side-by-side diff. `kind`: equal, delete, insert or replace."""

    kind: str
    left_number: int | None
    left: str | None
    right_number: int | None
    right: str | None


def prompt_diff(old: str, new: str) -> list[DiffRow]:
    """A side-by-side, line-by-line diff of two prompt texts (rendered escaped by templates)."""
    old_lines = (old or "").splitlines()
    new_lines = (new or "").splitlines()
    rows = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for offset in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + offset, j1 + offset
            left = old_lines[i] if i < i2 else None
            right = new_lines[j] if j < j2 else None
            kind = tag
            if tag == "replace":
                kind = (
                    "replace"
                    if left is not None and right is not None
                    else ("delete" if right is None else "insert")
                )
            rows.append(
                DiffRow(
                    kind=kind,
                    left_number=i + 1 if left is not None else None,
                    left=left,
                    right_number=j + 1 if right is not None else None,
                    right=right,
                )
            )
    return rows


# --- Runs list (the runs page) -----------------------------------------------------------------

RUN_LIST_PAGE_SIZE = 50
# The related rows' names a row shows, joined in (`workflow_name`…) rather than
# `select_related`, and every row read as values (`RunRow`), not as model instances: building
# them (50 runs and their 200 related rows a request) was the largest part of a list poll.
RUN_LIST_NAMES = {
    "workflow_name": F("workflow__name"),
    "model_option_name": F("model_option__name"),
    "prompt_version_number": F("prompt_version__number"),
    "launched_by_username": F("launched_by__username"),
}
# What a row shows (and what the refresh of its unfinished runs needs): the heavy JSON columns
# (inputs, outputs, message history, usage) and the related rows' prompts and schemas are never
# read for a list.
RUN_LIST_FIELDS = (
    "pk",
    "created_at",
    "cyberdesk_id",
    "workflow_id",
    "batch_id",
    "model_option_id",
    "prompt_mode",
    "prompt_label",
    "prompt_version_id",
    "launched_by_id",
    "submission",
    "status",
    "attempt",
    "started_at",
    "ended_at",
    "cost_usd",
    "synced_at",
)
DEFAULT_MODEL = "default"  # the model filter's value for "workflow default" (no override)
STORED_PROMPT = "stored"  # the prompt filter's value for the workflow's stored prompt
# A text search reads the inputs and batch names of at most this many of the newest runs (a JSON
# column has no index a substring could use); a Cyberdesk id or "#<run>" is looked up across the
# whole history through its index. The page says so.
RUN_SEARCH_WINDOW = 10_000
RUN_FILTER_BATCH_CHOICES = 100  # the newest batches offered by name in the batch filter
# How long cached filter choices are kept: only to free the memory of old versions. A change
# bumps the version, so nothing waits this out to appear.
RUN_FILTER_CHOICES_CACHE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class RunFilters:
    """The runs page's filters, as parsed from its query string (None / "" = not filtered)."""

    workflow_id: str = ""
    status: str = ""
    model: str = ""  # a ModelOption id, or DEFAULT_MODEL
    prompt_version: str = ""  # a PromptVersion pk, or STORED_PROMPT
    label: str = ""
    launched_by: int | None = None
    batch: int | None = None
    created_from: date | None = None
    created_to: date | None = None
    search: str = ""


@dataclass(frozen=True)
class RunCursor:
    """A position in the list, newest first: the (created_at, id) of a row. `Older` pages
    start after it, `Newer` pages end before it. In the URL as `<µs since the epoch>-<id>`."""

    created_at: datetime
    id: int

    _EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

    @classmethod
    def of(cls, run: Run) -> RunCursor:
        return cls(run.created_at, run.pk)

    @classmethod
    def parse(cls, value: str) -> RunCursor | None:
        """The cursor a link carries, or None when it is not one (never raises)."""
        micros, _, pk = (value or "").partition("-")
        if not (micros.isascii() and micros.isdigit() and pk.isascii() and pk.isdigit()):
            return None
        if len(micros) > 17 or len(pk) > 18:
            return None
        try:
            created_at = cls._EPOCH + timedelta(microseconds=int(micros))
        except OverflowError:
            return None
        return cls(created_at, int(pk))

    def __str__(self) -> str:
        return f"{(self.created_at - self._EPOCH) // timedelta(microseconds=1)}-{self.id}"


@dataclass(frozen=True)
class RunPage:
    """One page of the runs list: its rows and the cursors of the pages around it (no count:
    counting a million rows on every request is what made the list slow)."""

    runs: list  # rows of the queryset paged (runs_for_list's: named values; see `run_rows`)
    newer: RunCursor | None  # link to the page before (None: this is the newest page)
    older: RunCursor | None  # link to the page after (None: nothing older)
    search_window: int | None = None  # a text search read the inputs of this many runs at most


def runs_for_list(filters: RunFilters) -> QuerySet[Run]:
    """Runs newest first, matching `filters`, with what each row shows joined in (one query per
    page whatever its length; the related names as `RUN_LIST_NAMES`) and nothing else (see
    `RUN_LIST_FIELDS`). Unsliced: take a page with `runs_page`."""
    runs = _runs_for_list_base().all()
    if filters.workflow_id:
        runs = runs.filter(workflow_id=filters.workflow_id)
    if filters.status:
        runs = runs.filter(status=filters.status)
    if filters.model == DEFAULT_MODEL:
        runs = runs.filter(model_option__isnull=True)
    elif filters.model:
        runs = runs.filter(model_option_id=filters.model)
    if filters.prompt_version == STORED_PROMPT:
        runs = runs.filter(prompt_mode=PromptMode.STORED)
    elif filters.prompt_version:
        runs = runs.filter(prompt_version_id=filters.prompt_version)
    if filters.label:
        runs = runs.filter(prompt_label=filters.label)
    if filters.launched_by is not None:
        runs = runs.filter(launched_by_id=filters.launched_by)
    if filters.batch is not None:
        runs = runs.filter(batch_id=filters.batch)
    if filters.created_from:
        runs = runs.filter(created_at__gte=_start_of(filters.created_from))
    if filters.created_to:
        runs = runs.filter(created_at__lt=_start_of(filters.created_to + timedelta(days=1)))
    if filters.search:
        runs = runs.filter(_search(filters.search))
    return runs


@functools.cache
def _runs_for_list_base() -> QuerySet:
    """The unfiltered list query, set up once per process (its joins and columns took longer
    to set up than the poll's other work); never evaluated itself, only cloned (`.all()`,
    `.filter()`), so it holds no rows."""
    return (
        Run.objects.annotate(**RUN_LIST_NAMES)
        .order_by("-created_at", "-id")
        .values_list(*RUN_LIST_FIELDS, *RUN_LIST_NAMES, named=True)
    )


@dataclass
class RunRow(AttemptOutcome):
    """A row of the runs list, from the values `runs_for_list` reads (no model instance). It
    answers what the table, its fingerprint and the refresh of unfinished runs ask of a run:
    its columns, the related names, `pk`, `is_finished`, `duration`, `get_status_display()`."""

    pk: int
    created_at: datetime
    cyberdesk_id: uuid.UUID | None
    workflow_id: uuid.UUID
    batch_id: int | None
    model_option_id: uuid.UUID | None
    prompt_mode: str
    prompt_label: str
    prompt_version_id: int | None
    launched_by_id: int | None
    submission: str
    status: str
    attempt: int
    started_at: datetime | None
    ended_at: datetime | None
    cost_usd: Any
    synced_at: datetime | None
    workflow_name: str | None
    model_option_name: str | None
    prompt_version_number: int | None
    launched_by_username: str | None
    duration_text: str = ""  # set by the view when it renders the table

    def get_status_display(self) -> str:
        return _STATUS_LABELS.get(self.status, self.status)


_STATUS_LABELS = dict(RunStatus.choices)


def run_rows(values) -> list[RunRow]:
    """The `RunRow` of each row `runs_for_list` (or a page of it) read."""
    return [RunRow(**row._asdict()) for row in values]


def _search(text: str) -> Q:
    """What a search box value matches, always through an index or a bounded range:

    - a Cyberdesk id (a whole UUID): that run, across the whole history;
    - "#123": run 123;
    - anything else: runs among the newest `RUN_SEARCH_WINDOW` whose inputs (their JSON text,
      case-insensitive) or whose batch's name contain it. The window is a `created_at` range
      starting at the window's oldest run (a scalar subquery over the created_at index), so the
      scan stops there however rare the text is.
    """
    text = text.strip()
    try:
        return Q(cyberdesk_id=uuid.UUID(text))
    except ValueError:
        pass
    number = text.removeprefix("#")
    if text.startswith("#") and number.isascii() and number.isdigit() and len(number) <= 18:
        return Q(pk=int(number))
    window_start = Subquery(
        Run.objects.order_by("-created_at", "-id").values("created_at")[
            RUN_SEARCH_WINDOW - 1 : RUN_SEARCH_WINDOW
        ]
    )
    in_window = Q(created_at__gte=Coalesce(window_start, Value(datetime(1970, 1, 1, tzinfo=UTC))))
    batches = Batch.objects.filter(name__icontains=text).values("pk")
    return in_window & (Q(input_values__icontains=text) | Q(batch__in=batches))


RUN_LIST_MAX_PAGE = 20  # `?page=N` (old links) goes this deep at most: an offset is not free


def runs_page(
    runs: QuerySet[Run],
    *,
    before: RunCursor | None = None,
    after: RunCursor | None = None,
    number: int = 1,
    size: int = RUN_LIST_PAGE_SIZE,
) -> RunPage:
    """One page of `runs` (ordered newest first), by keyset: the `size` runs older than
    `before`, or the `size` runs newer than `after`, or the newest `size`. One query (two when
    a "Newer" link reaches the top). Each query reads `size + 1` index entries, whatever the
    depth of the page or the size of the history.

    `number` (a numbered link, `?page=N`) is an offset, capped at `RUN_LIST_MAX_PAGE` pages so
    its cost stays bounded; the page's own links are keyset ones."""
    if before is None and after is None and number > 1:
        offset = (min(number, RUN_LIST_MAX_PAGE) - 1) * size
        rows = list(runs[offset : offset + size + 1])
        older = RunCursor.of(rows[size - 1]) if len(rows) > size else None
        rows = rows[:size]
        return RunPage(rows, newer=RunCursor.of(rows[0]) if rows else None, older=older)
    if after is not None:
        newer_rows = list(runs.filter(_newer_than(after)).order_by("created_at", "id")[: size + 1])
        if len(newer_rows) > size:
            rows = list(reversed(newer_rows[:size]))
            return RunPage(rows, newer=RunCursor.of(rows[0]), older=RunCursor.of(rows[-1]))
        # Fewer than a page newer than the cursor: the newest page is the honest answer.
        before = None
    query = runs.filter(_older_than(before)) if before is not None else runs
    rows = list(query[: size + 1])
    older = RunCursor.of(rows[size - 1]) if len(rows) > size else None
    rows = rows[:size]
    newer = RunCursor.of(rows[0]) if before is not None and rows else None
    return RunPage(rows, newer=newer, older=older)


def _older_than(cursor: RunCursor) -> Q:
    # The redundant `created_at <= …` gives both databases an index range to start from; the
    # OR then only settles ties on created_at.
    return Q(created_at__lte=cursor.created_at) & (
        Q(created_at__lt=cursor.created_at) | Q(pk__lt=cursor.id)
    )


def _newer_than(cursor: RunCursor) -> Q:
    return Q(created_at__gte=cursor.created_at) & (
        Q(created_at__gt=cursor.created_at) | Q(pk__gt=cursor.id)
    )


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@dataclass(frozen=True)
class RunFilterChoices:
    workflows: list[tuple[str, str]]
    models: list[tuple[str, str]]
    prompt_versions: list[tuple[str, str]]
    labels: list[str]
    users: list[tuple[int, str]]
    batches: list[tuple[int, str]]


def run_filter_choices(*, batch: int | None = None, version: int | None = None) -> RunFilterChoices:
    """What each filter offers: only values some run has; the newest batches by name, plus the
    chosen `batch` when it is older.

    Read once per change, not per request: cached under `cache_versions.RUN_FILTER_CHOICES`,
    which every change to what they list bumps (a new batch, workflow, model, version, label,
    user or run), so the next request after a change reads them again. One query (the version;
    none when the caller has just read it: `version`) while nothing changed; the chosen older
    batch adds one."""
    if version is None:
        version = cache_version(RUN_FILTER_CHOICES)
    key = f"launcher:run-filter-choices:{version}"
    choices = cache.get(key)
    if choices is None:
        choices = _run_filter_choices_read()
        cache.set(key, choices, RUN_FILTER_CHOICES_CACHE_SECONDS)
    if batch is not None and all(pk != batch for pk, _ in choices.batches):
        older = _batch_choices(Batch.objects.filter(pk=batch))
        choices = dataclasses.replace(choices, batches=[*choices.batches, *older])
    return choices


def _batch_choices(batches: QuerySet) -> list[tuple[int, str]]:
    return [
        (pk, f"{name or f'Batch {pk}'} (#{pk})")
        for pk, name in batches.order_by("-created_at", "-pk").values_list("pk", "name")
    ]


def _run_filter_choices_read() -> RunFilterChoices:
    """The choices from the database, each found by an EXISTS probe of a runs index (cost grows
    with the number of models, versions and users, not of runs). Six queries."""

    def used(field: str, outer: str = "pk") -> Exists:
        return Exists(Run.objects.filter(**{field: OuterRef(outer)}))

    workflows = [
        (str(pk), name or str(pk)) for pk, name in Workflow.objects.values_list("pk", "name")
    ]
    models = [
        (str(pk), name)
        for pk, name in ModelOption.objects.filter(used("model_option"))
        .order_by("name")
        .values_list("pk", "name")
    ]
    versions = [
        (str(pk), f"{workflow_name or workflow_id} v{number}")
        for pk, number, workflow_id, workflow_name in PromptVersion.objects.filter(
            used("prompt_version")
        )
        .order_by("workflow__name", "-number")
        .values_list("pk", "number", "workflow_id", "workflow__name")
    ]
    labels = sorted(
        set(PromptLabel.objects.filter(used("prompt_label", "name")).values_list("name", flat=True))
    )
    users = list(
        get_user_model()
        .objects.filter(used("launched_by"))
        .order_by("username")
        .values_list("pk", "username")
    )
    newest = Batch.objects.order_by("-created_at").values("pk")[:RUN_FILTER_BATCH_CHOICES]
    batches = _batch_choices(Batch.objects.filter(pk__in=newest))
    return RunFilterChoices(workflows, models, versions, labels, users, batches)


# --- Workflows: an unaddressed error upstream --------------------------------------------------


def workflow_error_runs(workflows) -> dict:
    """For each workflow with an unaddressed error (the API's `workflow_metadata`) whose run
    Launcher launched: {workflow pk: that run's pk}, so the page can link to it. One query, and
    none when no workflow names an errored run."""
    wanted = {
        w.last_error_run_id: w.pk for w in workflows if w.last_run_errored and w.last_error_run_id
    }
    if not wanted:
        return {}
    found = Run.objects.filter(cyberdesk_id__in=wanted).values_list("cyberdesk_id", "pk")
    return {wanted[cyberdesk_id]: pk for cyberdesk_id, pk in found}


# --- Batches (the batch page and its export) ------------------------------------------------


@dataclass(frozen=True)
class ProgressSegment:
    """One part of a batch's progress bar: runs in one state now, and its share of the batch."""

    key: str  # succeeded, failed, cancelled, rejected, running, queued, unknown (CSS class)
    label: str
    count: int
    start: float  # percent of the bar before this segment
    percent: float


@dataclass(frozen=True)
class BatchProgress:
    """How far a batch has come. `queued` runs are not sent yet; `submitted` the API has.

    `segments` is the one breakdown the page shows: every run counted once, by its state now
    (succeeded, failed, cancelled, not started, running, queued, outcome unknown), adding up to
    `total`. (`submitted` is a running total of what was ever sent, not a state: not shown.)"""

    total: int
    queued: int
    unknown: int
    rejected: int
    submitted: int
    scheduling: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    waiting: int = 0  # not sent yet (status pending, outcome known)
    pending_unknown: int = 0  # sent, but whether the API has it is not known yet

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.rejected

    @property
    def is_finished(self) -> bool:
        return self.finished >= self.total

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 100

    @property
    def active(self) -> int:
        """Runs the API has and is working on (scheduling, running, running checks)."""
        return self.scheduling + self.running

    @property
    def segments(self) -> list[ProgressSegment]:
        parts = [
            ("succeeded", "Succeeded", self.succeeded),
            ("failed", "Failed", self.failed),
            ("cancelled", "Cancelled", self.cancelled),
            ("rejected", "Not started", self.rejected),
            ("running", "Running", self.active),
            ("queued", "Queued", self.waiting),
            ("unknown", "Outcome unknown", self.pending_unknown),
        ]
        # Anything counted nowhere else (a status this code does not know yet) shows as queued,
        # so the segments always add up to the batch size.
        rest = self.total - sum(count for _, _, count in parts)
        if rest > 0:
            parts[5] = ("queued", "Queued", self.waiting + rest)
        segments, start = [], 0.0
        for key, label, count in parts:
            percent = 100 * count / self.total if self.total else 0.0
            segments.append(ProgressSegment(key, label, count, round(start, 3), round(percent, 3)))
            start += percent
        return segments

    @property
    def summary(self) -> str:
        """The breakdown as one sentence (the bar's accessible name)."""
        shown = [f"{s.count} {s.label.lower()}" for s in self.segments if s.count]
        return f"{self.total} runs: " + (", ".join(shown) if shown else "none yet")


# The statuses a run can still leave, named positively: `status IN (…)` seeks these few
# entries of the run_batch_status index, where `NOT IN (terminal)` reads the whole batch.
UNFINISHED_STATUSES = tuple(s for s in RunStatus.values if s not in TERMINAL_STATUSES)


def batch_unfinished_sent_runs(batch: Batch) -> list[Run]:
    """The batch's runs the API has and that have not finished: what a poll refreshes. Its
    cost follows the runs in flight, not the batch's size (no ordering: the default
    newest-first order would make the database walk every run of the batch instead)."""
    return list(
        Run.objects.filter(
            batch=batch, status__in=UNFINISHED_STATUSES, cyberdesk_id__isnull=False
        ).order_by()
    )


# The runs a batch's progress still counts one by one: those on their way (not finished) and
# those set aside (refused, not sent, sent without an answer). In a finished batch these are
# few whatever its size; everything else is derived from the kept numbers.
_PROGRESS_COUNTED_STATUSES = (*UNFINISHED_STATUSES, RunStatus.REJECTED)
_PROGRESS_COUNTED_SUBMISSIONS = (Submission.QUEUED, Submission.UNKNOWN, Submission.REJECTED)


def batch_progress(batch: Batch) -> BatchProgress:
    """Counts by submission and status, in two queries that read no run of a finished batch.

    The batch's size and outcomes are its grid cells' kept counters (`BatchCellRollup`: every
    run is in one cell; runs, outcomes, successes, one row per cell); only the unfinished,
    rejected, queued and unknown runs are grouped by (submission, status): on PostgreSQL a
    BitmapOr of seeks on the `run_batch_status` and `run_batch_submission` indexes; SQLite
    reads the batch's entries of the covering `run_batch_status` index (no table row).
    Accepted = size − queued − unknown − refused; cancelled = size − unfinished − rejected −
    outcomes. (The two reads are two statements: a run finishing between them can show once in
    both on one poll, and the next poll is exact.)"""
    counts: dict[tuple[str, str], int] = {
        (submission, status): n
        for submission, status, n in Run.objects.filter(batch=batch)
        .filter(
            Q(status__in=_PROGRESS_COUNTED_STATUSES)
            | Q(submission__in=_PROGRESS_COUNTED_SUBMISSIONS)
        )
        .order_by()
        .values_list("submission", "status")
        .annotate(n=Count("id"))
        .values_list("submission", "status", "n")
    }
    kept = BatchCellRollup.objects.filter(batch=batch).aggregate(
        runs=Sum("runs"), outcomes=Sum("outcomes"), succeeded=Sum("succeeded")
    )
    size, outcomes, succeeded = (kept[name] or 0 for name in ("runs", "outcomes", "succeeded"))

    def total(*, submission=None, statuses=()) -> int:
        return sum(
            n
            for (sub, status), n in counts.items()
            if (submission is None or sub == submission) and (not statuses or status in statuses)
        )

    queued = total(submission=Submission.QUEUED)
    unknown = total(submission=Submission.UNKNOWN)
    refused = total(submission=Submission.REJECTED)
    rejected = total(statuses=(RunStatus.REJECTED,))
    unfinished = total(statuses=UNFINISHED_STATUSES)
    pending_unknown = total(submission=Submission.UNKNOWN, statuses=(RunStatus.PENDING,))
    return BatchProgress(
        total=size,
        queued=queued,
        unknown=unknown,
        rejected=rejected,
        submitted=size - queued - unknown - refused,
        scheduling=total(statuses=(RunStatus.SCHEDULING,)),
        running=total(statuses=(RunStatus.RUNNING, RunStatus.RUNNING_CHECKS)),
        succeeded=succeeded,
        failed=outcomes - succeeded,
        cancelled=size - unfinished - rejected - outcomes,
        waiting=total(statuses=(RunStatus.PENDING,)) - pending_unknown,
        pending_unknown=pending_unknown,
    )


# --- A batch's lifecycle: planned → sending → running → finished (or cancelled) ---------------


class BatchLifecycle:
    PLANNED = "planned"
    SENDING = "sending"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    LABELS = {
        PLANNED: "Planned",
        SENDING: "Sending",
        RUNNING: "Running",
        FINISHED: "Finished",
        CANCELLED: "Cancelled",
    }


def batch_lifecycle(*, state: str, total: int, queued: int, finished: int) -> str:
    """Where a batch is, from its own state and its runs' counts (never from `state` alone:
    `submitted` only says the sender is done, not that the runs are).

    cancelled — someone cancelled the rest; finished — every run has an outcome; planned —
    stored, nothing sent yet; sending — the worker is sending its queued runs; running — all
    sent, some still running."""
    if state == Batch.State.CANCELLED:
        return BatchLifecycle.CANCELLED
    if finished >= total:
        return BatchLifecycle.FINISHED
    if state == Batch.State.SUBMITTING and queued >= total:
        return BatchLifecycle.PLANNED
    if state == Batch.State.SUBMITTING and queued:
        return BatchLifecycle.SENDING
    return BatchLifecycle.RUNNING


def batch_progress_lifecycle(batch: Batch, progress: BatchProgress) -> str:
    return batch_lifecycle(
        state=batch.state, total=progress.total, queued=progress.queued, finished=progress.finished
    )


def batches_for_list(*, limit: int) -> list[Batch]:
    """The newest batches with their run counts and lifecycle (`run_count`, `lifecycle`,
    `lifecycle_label` on each). The size is the batch's stored `run_count`; only the small
    sets are counted, each by a seek for the batches shown: the unfinished runs (`status IN`
    the non-terminal ones, run_batch_status) and the queued ones (run_batch_submission). A
    finished batch costs two empty seeks whatever its size; finished = size − unfinished."""

    def count(**filters):
        return Coalesce(
            Subquery(
                Run.objects.filter(batch=OuterRef("pk"), **filters)
                .order_by()
                .values("batch")
                .annotate(n=Count("pk"))
                .values("n")
            ),
            0,
        )

    batches = list(
        Batch.objects.select_related("workflow", "created_by")
        .annotate(
            queued_count=count(submission=Submission.QUEUED),
            unfinished_count=count(status__in=UNFINISHED_STATUSES),
        )
        .order_by("-created_at")[:limit]
    )
    for batch in batches:
        batch.lifecycle = batch_lifecycle(
            state=batch.state,
            total=batch.run_count,
            queued=batch.queued_count,
            finished=batch.run_count - batch.unfinished_count,
        )
        batch.lifecycle_label = BatchLifecycle.LABELS[batch.lifecycle]
    return batches


def duration_display(value: timedelta | None) -> str:
    """ "42s", "3m 05s", "1h 02m"; "" when unknown."""
    if value is None:
        return ""
    seconds = max(0, round(value.total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


# Runs per read of the export: memory stays bounded by one chunk, whatever the batch's size.
EXPORT_CHUNK = 1000
# Only what a row of the export shows: the message history, attachments and raw answers of a
# run are the heavy part of its row and are never read here.
_EXPORT_FIELDS = (
    "pk",
    "cyberdesk_id",
    "batch_row",
    "status",
    "submission",
    "started_at",
    "ended_at",
    "cost_usd",
    "post_run_checks",
    "errors",
    "submission_error",
    "input_values",
    "output_data",
    "model_option__name",
    "prompt_version__number",
)


def batch_input_keys(batch: Batch) -> list[str]:
    """Every input name used by the batch's runs (the export's input columns), sorted. The
    database lists the JSON keys itself, so the header costs one query and no run is loaded."""
    # The table is named literally (no string building): Run's db_table is launcher_run.
    if connection.vendor == "postgresql":
        sql = (
            "SELECT DISTINCT jsonb_object_keys(input_values) FROM launcher_run "
            "WHERE batch_id = %s AND jsonb_typeof(input_values) = 'object'"
        )
    elif connection.vendor == "sqlite":
        sql = (
            "SELECT DISTINCT j.key FROM launcher_run AS r, json_each(r.input_values) AS j "
            "WHERE r.batch_id = %s AND json_type(r.input_values) = 'object'"
        )
    else:  # another database: read the inputs column alone, a chunk at a time
        values = Run.objects.filter(batch=batch).values_list("input_values", flat=True)
        return sorted({key for inputs in values.iterator(EXPORT_CHUNK) for key in inputs or {}})
    with connection.cursor() as cursor:
        cursor.execute(sql, [batch.pk])
        return sorted(key for (key,) in cursor.fetchall())


def batch_export_runs(batch: Batch, *, chunk: int = EXPORT_CHUNK) -> Iterator[Run]:
    """The batch's runs by input row, read in keyset chunks (`(batch_row, pk) > last … LIMIT
    chunk` on the run_batch_row index): each read costs the same however deep in the batch, and
    no read holds more than one chunk. Runs without a row (none from the planner) come last."""
    runs = (
        Run.objects.filter(batch=batch)
        .select_related("model_option", "prompt_version")
        .only(*_EXPORT_FIELDS)
    )
    after: Q | None = None
    while True:
        page = runs.filter(batch_row__isnull=False)
        page = page.filter(after) if after is not None else page
        found = list(page.order_by("batch_row", "pk")[:chunk])
        yield from found
        if len(found) < chunk:
            break
        last = found[-1]
        after = Q(batch_row__gt=last.batch_row) | Q(batch_row=last.batch_row, pk__gt=last.pk)
    last_pk = 0
    while True:
        found = list(runs.filter(batch_row__isnull=True, pk__gt=last_pk).order_by("pk")[:chunk])
        yield from found
        if len(found) < chunk:
            break
        last_pk = found[-1].pk


def batch_export_rows(batch: Batch) -> Iterator[list[Any]]:
    """The batch's runs as CSV rows (header first): outcome, timing, cost, each input in a column
    of its own (sensitive values are never stored, so never exported), outputs as JSON. A
    generator: the header goes out before any run is read, then one chunk at a time."""
    input_keys = batch_input_keys(batch)
    yield [
        "run",
        "cyberdesk_id",
        "row",
        "model",
        "prompt",
        "status",
        "submission",
        "started_at",
        "ended_at",
        "duration_seconds",
        "cost_usd",
        "checks_passed",
        "checks_total",
        "errors",
        *[f"input:{key}" for key in input_keys],
        "output_data",
    ]
    for run in batch_export_runs(batch):
        checks = [c for c in run.post_run_checks or [] if isinstance(c, dict)]
        inputs = run.input_values or {}
        yield [
            run.pk,
            run.cyberdesk_id or "",
            run.batch_row or "",
            run.model_option.name if run.model_option else "Workflow default",
            f"v{run.prompt_version.number}" if run.prompt_version else "stored",
            run.status,
            run.submission,
            run.started_at.isoformat() if run.started_at else "",
            run.ended_at.isoformat() if run.ended_at else "",
            round(run.duration.total_seconds(), 3) if run.duration else "",
            run.cost_usd if run.cost_usd is not None else "",
            sum(1 for c in checks if c.get("status") == "success"),
            len(checks),
            "\n".join(str(e) for e in run.errors or []) or run.submission_error,
            *[_cell(inputs[key]) if key in inputs else "" for key in input_keys],
            json.dumps(run.output_data, ensure_ascii=False) if run.output_data is not None else "",
        ]


def _cell(value: Any) -> Any:
    return value if isinstance(value, str | int | float) else json.dumps(value, ensure_ascii=False)
