"""A realistic run history, for benchmarks and for trying pages at scale
(`manage.py seed_history --runs N`).

Finished runs as the API leaves them — output data, a 30-step message history, usage, a cost,
post-run checks where the workflow has them, stored (empty) attachments — spread over the last
90 days across every workflow of the mirror, the offered models (and "workflow default"),
prompt versions (pinned, via `production`, latest, the stored prompt), three people and batches,
one of them a 10,000-run matrix batch (rows × models × versions).

The runs are bulk-inserted in chunks (no API call, no per-row save). They are marked by their
launchers (the `history-*` users), so running the command again adds only what is missing up to
N. Their Cyberdesk ids are made up: nothing upstream knows them, and nothing here asks, since
they are finished with everything stored. Attempts (earlier tries of a run) are not seeded.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from launcher.models import (
    Batch,
    ModelOption,
    PromptLabel,
    PromptLabelMove,
    PromptMode,
    PromptVersion,
    Run,
    RunStatus,
    Submission,
    Workflow,
    run_cell_numbers,
    run_duration_ms,
)
from launcher.permissions import OPERATORS_GROUP
from launcher.services.prompts import prompt_version_create
from launcher.services.rollups import rollups_rebuild

HISTORY_USERS = ("history-olivia", "history-omar", "history-ines")
BIG_BATCH_NAME = "History: 10,000-run matrix"
BIG_BATCH_RUNS = 10_000
HISTORY_DAYS = 90
MESSAGE_STEPS = 30
CHUNK = 1000  # runs per INSERT transaction
SMALL_BATCH_EVERY = 2_000  # one small batch of SMALL_BATCH_RUNS in each stretch of this many runs
SMALL_BATCH_RUNS = 120
VERSIONS_PER_WORKFLOW = 3
MODELS_USED = 4
# Finished statuses, as often as a busy team sees them.
STATUS_WEIGHTS = (
    (RunStatus.SUCCESS, 80),
    (RunStatus.TASK_FAILED, 8),
    (RunStatus.ERROR, 5),
    (RunStatus.CANCELLED, 5),
    (RunStatus.REJECTED, 2),
)


class HistoryUnavailable(Exception):
    """Nothing to build a history on (no workflow in the mirror); the message says what to do."""


@dataclass(frozen=True)
class HistoryReport:
    existing: int
    added: int
    batches: int
    big_batch_id: int | None


@dataclass(frozen=True)
class _Scene:
    workflows: list[Workflow]
    models: list[ModelOption | None]
    versions: dict  # workflow pk → [PromptVersion], oldest first
    users: list
    rng: random.Random


def history_seed(
    *,
    runs: int,
    big_batch_runs: int = BIG_BATCH_RUNS,
    seed: int = 1,
    now: datetime | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> HistoryReport:
    """Make sure the history holds `runs` seeded runs (adds the missing ones, newest last).

    The big matrix batch is made once, with min(`big_batch_runs`, half of what is added) runs.
    Raises `HistoryUnavailable` when the workflow mirror is empty.
    """
    workflows = list(Workflow.objects.order_by("name"))
    if not workflows:
        raise HistoryUnavailable(
            "No workflows to seed a history for: sync them first (`manage.py sync_workflows`, "
            "or `manage.py seed_sandbox` then `sync_workflows` for the local sandbox)."
        )
    users = _history_users()
    existing = Run.objects.filter(launched_by__in=users).count()
    missing = max(0, runs - existing)
    if not missing:
        return HistoryReport(existing=existing, added=0, batches=0, big_batch_id=None)
    rng = random.Random(seed * 1_000_003 + existing)
    scene = _Scene(
        workflows=workflows,
        models=[None, *_models()],
        versions={workflow.pk: _versions(workflow) for workflow in workflows},
        users=users,
        rng=rng,
    )
    now = now or timezone.now()
    # A second call continues the timeline after the first one's runs.
    newest = Run.objects.filter(launched_by__in=users).order_by("-created_at").first()
    start = now - timedelta(days=HISTORY_DAYS)
    if newest is not None and newest.created_at > start:
        start = newest.created_at
    end = now - timedelta(minutes=1)
    step = (end - start) / max(missing, 1)

    big_batch = None
    big_size = min(big_batch_runs, missing // 2)
    if big_size and not Batch.objects.filter(name=BIG_BATCH_NAME).exists():
        big_batch = _big_batch(scene)
    else:
        big_size = 0
    big_from = missing * 2 // 5  # the big batch sits at 40 % of the timeline
    plan = _Plan(scene, big_batch=big_batch, big_from=big_from, big_size=big_size, first=existing)
    added = 0
    with _created_at_as_given():
        chunk: list[Run] = []
        for index in range(missing):
            workflow, batch, batch_row, model, version, mode = plan.choices(index)
            chunk.append(
                _run(
                    scene,
                    workflow=workflow,
                    batch=batch,
                    batch_row=batch_row,
                    model=model,
                    version=version,
                    mode=mode,
                    created_at=start + step * index,
                )
            )
            if len(chunk) == CHUNK:
                added += _insert(chunk)
                chunk = []
                if added % (CHUNK * 10) == 0:
                    say(f"{added} of {missing} runs")
        added += _insert(chunk)
    # bulk_create skips the hooks that keep the prompts page's counters and the batches' cells
    # and run counts: recount them.
    rollups_rebuild()
    _statistics_refresh()
    batches = plan.small_batches + (1 if big_batch else 0)
    return HistoryReport(
        existing=existing,
        added=added,
        batches=batches,
        big_batch_id=big_batch.pk if big_batch else None,
    )


# --- The cast -----------------------------------------------------------------------------------


def _history_users() -> list:
    users = []
    operators = Group.objects.filter(name=OPERATORS_GROUP).first()
    for username in HISTORY_USERS:
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            if operators is not None:
                user.groups.add(operators)
        users.append(user)
    return users


def _models() -> list[ModelOption]:
    offered = list(
        ModelOption.objects.filter(is_computer_use=True, is_archived_upstream=False).order_by(
            "name"
        )[:MODELS_USED]
    )
    return offered or list(ModelOption.objects.order_by("name")[:MODELS_USED])


def _versions(workflow: Workflow) -> list[PromptVersion]:
    """The workflow's versions, oldest first; seeded up to three (v1 its stored prompt), with
    `production` on the second newest when no label exists yet."""
    versions = list(PromptVersion.objects.filter(workflow=workflow).order_by("number"))
    base = workflow.main_prompt or f"Run {workflow.name or workflow.pk}."
    while len(versions) < VERSIONS_PER_WORKFLOW:
        number = len(versions) + 1
        text = base if number == 1 else f"{base}\n\nHistory revision {number}: be precise."
        versions.append(
            prompt_version_create(workflow=workflow, text=text, note=f"history v{number}")
        )
    if not PromptLabel.objects.filter(workflow=workflow, name=PromptLabel.PRODUCTION).exists():
        label = PromptLabel.objects.create(
            workflow=workflow, name=PromptLabel.PRODUCTION, version=versions[-2]
        )
        PromptLabelMove.objects.create(
            label=label, to_version=versions[-2], reason="seed_history: the history's production"
        )
    return versions


def _big_batch(scene: _Scene) -> Batch:
    return Batch.objects.create(
        workflow=scene.workflows[0],
        name=BIG_BATCH_NAME,
        state=Batch.State.SUBMITTED,
        is_matrix=True,
        created_by=scene.users[0],
    )


class _Plan:
    """What each run of the timeline carries: (workflow, batch, batch_row, model, version,
    prompt mode). The big matrix batch fills one stretch (every model × the two newest versions
    × rows); each stretch of `SMALL_BATCH_EVERY` runs starts with a small batch of one
    workflow's newest version; the rest are single runs with a random mix of choices."""

    def __init__(self, scene: _Scene, *, big_batch, big_from: int, big_size: int, first: int):
        self.scene = scene
        self.big_batch, self.big_from, self.big_size = big_batch, big_from, big_size
        self.first = first
        self.small_batches = 0
        self._small: Batch | None = None
        if big_batch is not None:
            versions = scene.versions[big_batch.workflow_id][-2:]
            self.cells = [(model, version) for model in scene.models for version in versions]

    def choices(self, index: int) -> tuple:
        rng = self.scene.rng
        if self.big_batch is not None and self.big_from <= index < self.big_from + self.big_size:
            position = index - self.big_from
            model, version = self.cells[position % len(self.cells)]
            row = position // len(self.cells) + 1
            return self.big_batch.workflow, self.big_batch, row, model, version, PromptMode.PINNED
        offset = (self.first + index) % SMALL_BATCH_EVERY
        if offset < SMALL_BATCH_RUNS:
            if offset == 0 or self._small is None:
                self._small = Batch.objects.create(
                    workflow=rng.choice(self.scene.workflows),
                    name=f"History batch {(self.first + index) // SMALL_BATCH_EVERY + 1}",
                    state=Batch.State.SUBMITTED,
                    created_by=self.scene.users[1],
                )
                self.small_batches += 1
            workflow = self._small.workflow
            version = self.scene.versions[workflow.pk][-1]
            model = self.scene.models[offset % len(self.scene.models)]
            return workflow, self._small, offset + 1, model, version, PromptMode.PINNED
        self._small = None
        workflow = rng.choice(self.scene.workflows)
        versions = self.scene.versions[workflow.pk]
        model = rng.choice(self.scene.models)
        roll = rng.random()
        if roll < 0.45:
            mode, version = PromptMode.LABEL, versions[-2]
        elif roll < 0.7:
            mode, version = PromptMode.PINNED, rng.choice(versions)
        elif roll < 0.85:
            mode, version = PromptMode.LATEST, versions[-1]
        else:
            mode, version = PromptMode.STORED, None
        return workflow, None, None, model, version, mode


# --- One run --------------------------------------------------------------------------------


_WORDS = [
    "open the portal",
    "find the claim",
    "check the member id",
    "read the eligibility table",
    "copy the totals",
    "compare them with the invoice",
    "note the differences",
    "close the dialog",
    "export the report",
    "save it to the shared folder",
    "log out",
]
_ACTIONS = ("screenshot", "left_click", "type", "key", "scroll", "wait")


def _run(scene, **choices) -> Run:
    run = _run_unsaved(scene, **choices)
    # bulk_create skips save(): the grid's stored numbers are derived here.
    numbers = run_cell_numbers(
        post_run_checks=run.post_run_checks, usage_metadata=run.usage_metadata
    )
    for field, value in numbers.items():
        setattr(run, field, value)
    return run


def _run_unsaved(scene, *, workflow, batch, batch_row, model, version, mode, created_at) -> Run:
    rng = scene.rng
    status = rng.choices(
        [status for status, _ in STATUS_WEIGHTS], [weight for _, weight in STATUS_WEIGHTS]
    )[0]
    rejected = status == RunStatus.REJECTED
    started = None if rejected else created_at + timedelta(seconds=rng.uniform(2, 40))
    ended = None if rejected else started + timedelta(seconds=rng.lognormvariate(4.6, 0.5))
    inputs = _inputs(workflow, rng)
    text = version.text if version else workflow.main_prompt
    prompt_sha = hashlib.sha256((text or "").encode()).hexdigest()
    finished_ok = status == RunStatus.SUCCESS
    input_tokens = rng.randint(20_000, 160_000)
    output_tokens = rng.randint(800, 9_000)
    return Run(
        idempotency_key=uuid.UUID(int=rng.getrandbits(128), version=4),
        cyberdesk_id=None if rejected else uuid.UUID(int=rng.getrandbits(128), version=4),
        workflow=workflow,
        batch=batch,
        batch_row=batch_row,
        model_option=model,
        prompt_mode=mode,
        prompt_label=PromptLabel.PRODUCTION if mode == PromptMode.LABEL else "",
        prompt_version=version,
        prompt_sha256=prompt_sha,
        input_values=inputs,
        launched_by=scene.users[rng.randrange(len(scene.users))],
        created_at=created_at,
        submission=Submission.REJECTED if rejected else Submission.ACCEPTED,
        submission_error="Cyberdesk refused this run: invalid input." if rejected else "",
        submission_attempts=1,
        status=status,
        started_at=started,
        ended_at=ended,
        duration_ms=run_duration_ms(started_at=started, ended_at=ended),  # bulk_create skips save()
        output_data=_output(workflow, model, prompt_sha, inputs, rng) if finished_ok else None,
        errors=[] if finished_ok or rejected else [_error(rng)],
        post_run_checks=_checks(rng, finished_ok) if workflow.has_post_run_checks else [],
        usage_metadata=None
        if rejected
        else {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": input_tokens // 3,
            "steps": MESSAGE_STEPS,
        },
        message_history=None if rejected else _messages(rng),
        cost_usd=None
        if rejected
        else (Decimal(input_tokens * 3 + output_tokens * 15) / Decimal(1_000_000)).quantize(
            Decimal("0.000001")
        ),
        attachments=None if rejected else [],
        synced_at=ended or created_at,
    )


def _inputs(workflow: Workflow, rng: random.Random) -> dict:
    properties = ((workflow.input_schema or {}).get("properties") or {}).items()
    values = {}
    for key, spec in properties:
        if key.startswith("$") or not isinstance(spec, dict):
            continue  # secrets are never stored
        kind = spec.get("type")
        if spec.get("enum"):
            values[key] = rng.choice(spec["enum"])
        elif kind == "integer":
            values[key] = rng.randint(spec.get("minimum", 1), spec.get("maximum", 500))
        elif kind == "number":
            values[key] = round(rng.uniform(1, 5_000), 2)
        elif kind == "boolean":
            values[key] = rng.random() < 0.5
        elif kind == "array":
            values[key] = [f"item-{rng.randint(1, 99)}"]
        else:
            values[key] = f"{key.replace('_', '-')}-{rng.randint(10_000, 99_999)}"
    return values


def _output(workflow, model, prompt_sha, inputs, rng) -> dict:
    return {
        "effective_model_id": str(model.pk) if model else None,
        "effective_model": model.name if model else "workflow default",
        "prompt_source": "run_override",
        "prompt_sha256": prompt_sha,
        "prompt_first_line": (workflow.main_prompt or "").splitlines()[0][:80]
        if workflow.main_prompt
        else "",
        "inputs": inputs,
        "result": {
            "status": "completed",
            "records_checked": rng.randint(1, 40),
            "amount": round(rng.uniform(10, 9_000), 2),
            "notes": [rng.choice(_WORDS) for _ in range(3)],
        },
    }


def _error(rng) -> str:
    return f"Step {rng.randint(3, 29)}: could not {rng.choice(_WORDS)} (element not found)."


def _checks(rng, ok: bool) -> list:
    return [
        {
            "name": "Output has a total",
            "type": "llm",
            "status": "success" if ok or rng.random() < 0.5 else "failed",
            "error_message": "" if ok else "No total in the output.",
        }
    ]


def _messages(rng) -> list:
    history = [{"role": "user", "content": "Start the task described in the prompt."}]
    for step in range(1, MESSAGE_STEPS):
        if step % 2:
            history.append(
                {
                    "role": "assistant",
                    "content": f"Step {step}: I will {rng.choice(_WORDS)}.",
                    "tool_use": {
                        "action": rng.choice(_ACTIONS),
                        "coordinate": [rng.randint(0, 1280), rng.randint(0, 800)],
                    },
                }
            )
        else:
            history.append(
                {
                    "role": "tool",
                    "content": f"Done: {rng.choice(_WORDS)}; screenshot taken.",
                    "screenshot_id": f"shot-{rng.getrandbits(40):010x}",
                }
            )
    return history


# --- Writing ----------------------------------------------------------------------------------


def _insert(runs: list[Run]) -> int:
    if not runs:
        return 0
    with transaction.atomic():
        Run.objects.bulk_create(runs, batch_size=CHUNK)
    return len(runs)


@contextmanager
def _created_at_as_given():
    """`created_at` is `auto_now_add`; a history needs its own dates, so the field keeps the
    value given while seeding (and only then)."""
    field = Run._meta.get_field("created_at")
    previous = field.auto_now_add
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = previous


def _statistics_refresh() -> None:
    """PostgreSQL plans from table statistics, and a bulk load leaves them stale until
    autovacuum gets round to it (minutes later, or never on a short-lived bench database).
    A real history's tables are analyzed and vacuumed; so is a seeded one, at once. VACUUM
    matters as much as ANALYZE: until a page is marked all-visible, an "index-only" scan still
    reads the table row behind every index entry (17,422 buffers instead of 289 for a big
    batch's duration probes), which a history that autovacuum has seen never does. VACUUM
    cannot run inside a transaction, so inside one (a test) this only analyzes. SQLite's
    planner reads the indexes themselves and needs nothing."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)")
