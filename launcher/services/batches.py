"""Batches: many runs of one workflow launched together — rows × models × prompt choices.

Three steps, each safe to repeat:

1. **Check** (`batch_rows_check`): the rows come from a pasted or uploaded CSV (header = input
   keys) or JSON Lines file, or are N copies of one set of inputs. Every row is coerced and
   validated exactly as the launch form does it (`launcher.inputs`: `coerce_input`,
   `input_schema_errors`) and against the variables of the chosen prompts. Nothing is stored;
   the page shows the number of runs and each bad row with its line number.
2. **Plan** (`batch_create`): one transaction stores the batch and *every* run — model, prompt
   resolved to a concrete version, inputs, and its idempotency key — as `queued`. The plan is
   durable before anything is sent. The submission task is enqueued when that commits.
3. **Send** (`batch_submit`, run by `launcher.tasks.batch_submit_task` on the worker): the queued
   runs go out with bounded concurrency (`BATCH_CONCURRENCY`), each with its own stored key.
   A 429 pauses every sender for its Retry-After. The worker can die at any moment: a run the
   API accepted but whose answer was lost is still `queued` here, and sending it again with the
   same key makes the API replay its first answer — so a restarted batch ends with exactly the
   planned runs, never a duplicate.

Secrets and files are never stored, so a batch cannot carry them: rows may not name a sensitive
(`$name`) or file input, and a workflow that *requires* one is launched one run at a time.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Min, Q
from django.utils import timezone

from launcher.cyberdesk import errors, get_client
from launcher.inputs import (
    SENSITIVE_PREFIX,
    InputKind,
    InputSpec,
    coerce_input,
    contains_nul,
    input_schema_errors,
    input_specs,
)
from launcher.models import (
    TERMINAL_STATUSES,
    Batch,
    ModelOption,
    Run,
    RunStatus,
    Submission,
    Workflow,
)
from launcher.services.prompts import ResolvedPrompt, prompt_variables
from launcher.services.run_sync import run_apply_upstream
from launcher.services.runs import RunActionFailed, run_cancel, run_request, run_retry

logger = logging.getLogger(__name__)

CSV = "csv"
JSONL = "jsonl"

NEEDS_SECRETS = "This workflow needs secrets; launch its runs one at a time."
NEEDS_FILES = "This workflow needs files; launch its runs one at a time."
CANCELLED_BEFORE_SENDING = "Cancelled before it was sent; nothing ran."

# A claimed run is being sent; another sender leaves it alone this long. Longer than one send
# can take (write timeout × the client's attempts, plus its Retry-After waits).
CLAIM_TTL = timedelta(minutes=2)
# One task run sends for about this long, then hands over to a fresh task (so a worker asked to
# stop gracefully stops soon, and a dead worker's batch is noticed quickly).
SLICE_SECONDS = 30.0
RATE_LIMIT_DEFAULT_WAIT = 5.0  # a 429 without Retry-After
RATE_LIMIT_MAX_WAIT = 60.0  # longer waits end the slice; the next task starts after the wait
UNREACHABLE_MAX_WAIT = 30.0


def max_runs() -> int:
    return settings.BATCH_MAX_RUNS


# --- What a workflow allows ---------------------------------------------------------------------


def batch_blocker(workflow: Workflow) -> str:
    """Why this workflow cannot be launched as a batch ("" when it can): its schema requires a
    sensitive or a file input, which a batch cannot carry (neither is ever stored)."""
    specs = input_specs(workflow.input_schema)
    if any(spec.required and spec.sensitive for spec in specs):
        return NEEDS_SECRETS
    if any(spec.required and spec.kind == InputKind.FILE for spec in specs):
        return NEEDS_FILES
    return ""


def batch_prompt_problems(prompt: ResolvedPrompt, workflow: Workflow) -> list[str]:
    """What makes a prompt unusable in a batch: it fills `{$secret}` variables, and a batch
    carries no secrets."""
    text = prompt.text if prompt.text is not None else workflow.main_prompt
    _, secret = prompt_variables(text or "")
    if not secret:
        return []
    names = ", ".join("{$" + name + "}" for name in sorted(secret))
    return [f"{prompt.description} uses sensitive variables ({names}); a batch cannot fill them."]


# --- Step 1: reading and checking the rows ------------------------------------------------------


@dataclass(frozen=True)
class BatchRow:
    """One row of inputs. `line` is where it starts in the file (CSV: line 1 is the header);
    None for the copies of a "count" batch."""

    number: int  # 1, 2, 3 … among the rows
    line: int | None
    values: dict[str, Any]


@dataclass(frozen=True)
class BadRow:
    number: int
    line: int | None
    messages: list[str]


@dataclass
class RowCheck:
    """The rows of a batch, checked: the good ones, the bad ones with their line numbers and
    messages, and problems of the file as a whole (empty, wrong header, too many rows)."""

    rows: list[BatchRow] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.file_errors and bool(self.rows)


def input_format_detect(text: str) -> str:
    """JSON Lines when the first non-blank character opens an object, else CSV."""
    return JSONL if text.lstrip("\ufeff \t\r\n").startswith("{") else CSV


def csv_dialect(text: str) -> type[csv.Dialect]:
    """The CSV dialect of `text`: comma, semicolon or tab separated, as `csv.Sniffer` reads its
    first lines (spreadsheets in many locales save with ";"). Only the delimiter is taken from
    the sniffer (its quoting guesses are less reliable than Excel's rules); comma when it
    cannot tell."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        return csv.excel
    return csv.excel_tab if delimiter == "\t" else _SEMICOLON if delimiter == ";" else csv.excel


class _SEMICOLON(csv.excel):
    delimiter = ";"


def batch_rows_strip_secrets(text: str, input_format: str = "") -> tuple[str, list[str]]:
    """`text` without its sensitive (`$name`) columns or keys, and the names removed.

    A batch never carries secrets, and what was pasted is shown again with the preview: a
    secret typed into the rows must not come back in the page. CSV loses the columns; JSON
    Lines objects lose the keys (a line that is not a JSON object is left as it is).
    """
    body = text.removeprefix("\ufeff")
    if (input_format or input_format_detect(body)) == JSONL:
        return _jsonl_without_secrets(body)
    dialect = csv_dialect(body)
    try:
        table = list(csv.reader(io.StringIO(body), dialect))
    except csv.Error:
        return text, []
    if not table:
        return text, []
    secret_columns = [i for i, name in enumerate(table[0]) if name.strip().startswith("$")]
    if not secret_columns:
        return text, []
    removed = [table[0][i].strip() for i in secret_columns]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=dialect.delimiter, lineterminator="\n")
    for row in table:
        writer.writerow([cell for i, cell in enumerate(row) if i not in secret_columns])
    return out.getvalue(), removed


def batch_inputs_strip_secrets(inputs_json: str) -> tuple[str, list[str]]:
    """The N-copies inputs (one JSON object) without sensitive keys; see above."""
    stripped, removed = _jsonl_without_secrets(inputs_json, single=True)
    return stripped, removed


def _jsonl_without_secrets(text: str, *, single: bool = False) -> tuple[str, list[str]]:
    removed: list[str] = []
    lines = [text] if single else text.splitlines()
    kept = []
    for line in lines:
        try:
            value = json.loads(line) if line.strip() else None
        except ValueError:
            value = None
        if isinstance(value, dict) and any(str(k).startswith("$") for k in value):
            removed += [k for k in value if str(k).startswith("$") and k not in removed]
            line = json.dumps(
                {k: v for k, v in value.items() if not str(k).startswith("$")},
                ensure_ascii=False,
            )
        kept.append(line)
    if not removed:
        return text, []
    return "\n".join(kept) + ("" if single else "\n"), removed


def batch_rows_check(
    *,
    workflow: Workflow,
    prompts: Sequence[ResolvedPrompt],
    text: str,
    input_format: str = "",
) -> RowCheck:
    """Parse CSV or JSON Lines `text` into rows and validate each one.

    CSV: the header names the input keys; empty cells are missing values; each cell is coerced
    to its schema type as the launch form does ("42" → 42, "true" → true, JSON for objects).
    JSON Lines: one object per line, blank lines skipped. Either way each row is validated
    against the workflow's input schema, and must fill every `{variable}` the chosen prompts use.
    """
    text = text.removeprefix("\ufeff")
    fmt = input_format or input_format_detect(text)
    if not text.strip():
        return RowCheck(file_errors=["The file is empty: add a header line and one row per run."])
    checker = _RowChecker(workflow, prompts)
    check = RowCheck()
    parsed = (
        _parse_jsonl(text, checker, check) if fmt == JSONL else _parse_csv(text, checker, check)
    )
    if check.file_errors:
        return check
    if not parsed:
        check.file_errors.append(
            "The file has a header but no rows."
            if fmt == CSV
            else "The file has no rows: put one JSON object per line."
        )
        return check
    for number, line, values, messages, failed in parsed:
        if values is not None:  # None: the line could not be read at all
            messages = messages + checker.validate(values, skip=failed)
        if messages:
            check.bad_rows.append(BadRow(number=number, line=line, messages=messages))
        else:
            check.rows.append(BatchRow(number=number, line=line, values=values))
    return check


def batch_inputs_check(
    *,
    workflow: Workflow,
    prompts: Sequence[ResolvedPrompt],
    inputs: Mapping[str, Any] | str,
    count: int,
) -> RowCheck:
    """`count` identical runs with one set of inputs (a JSON object, or its text)."""
    if isinstance(inputs, str):
        try:
            inputs = json.loads(inputs) if inputs.strip() else {}
        except ValueError:
            return RowCheck(file_errors=["The inputs are not valid JSON."])
    if not isinstance(inputs, Mapping):
        return RowCheck(file_errors=['The inputs must be a JSON object: {"key": value, …}.'])
    if count < 1:
        return RowCheck(file_errors=["Choose at least one run."])
    if count > max_runs():
        return RowCheck(file_errors=[f"A batch is at most {max_runs()} runs."])
    checker = _RowChecker(workflow, prompts)
    values = {str(k): v for k, v in inputs.items() if v is not None}
    messages = checker.check_keys(values.keys()) + checker.validate(values)
    if messages:
        return RowCheck(file_errors=[f"Inputs: {message}" for message in messages])
    return RowCheck(
        rows=[BatchRow(number=n, line=None, values=values) for n in range(1, count + 1)]
    )


class _RowChecker:
    """What every row is held to: the workflow's inputs (as the launch form knows them) and the
    variables of the chosen prompts."""

    def __init__(self, workflow: Workflow, prompts: Sequence[ResolvedPrompt]):
        self.workflow = workflow
        variables: set[str] = set()
        for prompt in prompts:
            text = prompt.text if prompt.text is not None else workflow.main_prompt
            plain, _ = prompt_variables(text or "")
            variables |= plain
        self.prompt_variables = sorted(variables)
        self.specs = {spec.key: spec for spec in input_specs(workflow.input_schema, variables)}

    def check_keys(self, keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        messages = []
        sensitive = [key for key in keys if key.startswith(SENSITIVE_PREFIX)]
        if sensitive:
            messages.append(
                f"Sensitive inputs cannot come from a batch ({', '.join(sensitive)}): secrets "
                "are never stored. Launch runs that need them one at a time."
            )
        files = [
            key
            for key in keys
            if key in self.specs and self.specs[key].kind == InputKind.FILE and key not in sensitive
        ]
        if files:
            messages.append(f"File inputs cannot come from a batch ({', '.join(files)}).")
        unknown = [key for key in keys if key not in self.specs and key not in sensitive]
        if unknown:
            known = ", ".join(k for k, s in self.specs.items() if not s.sensitive) or "none"
            messages.append(
                f"Unknown input keys: {', '.join(unknown)}. This workflow's inputs: {known}."
            )
        return messages

    def coerce_cell(self, key: str, raw: str) -> Any:
        """A CSV cell → its JSON value, as the launch form's field would give it."""
        spec: InputSpec = self.specs[key]
        if raw.strip() == "":
            return None
        if spec.kind == InputKind.BOOLEAN:
            word = raw.strip().lower()
            if word in ("true", "yes", "1", "on"):
                return True
            if word in ("false", "no", "0", "off"):
                return False
            raise ValidationError("Enter true or false.")
        if spec.kind == InputKind.STRING_LIST and raw.lstrip().startswith("["):
            try:
                return json.loads(raw)
            except ValueError:
                raise ValidationError("Enter a JSON list, or one item per line.") from None
        return coerce_input(spec, raw)

    def validate(self, values: Mapping[str, Any], *, skip: Iterable[str] = ()) -> list[str]:
        skip = set(skip)
        by_key, general = input_schema_errors(self.workflow.input_schema, values, skip_keys=skip)
        messages = [f"{key}: {message}" for key, found in by_key.items() for message in found]
        messages += general
        # The runs' inputs are stored before sending, and PostgreSQL stores no U+0000.
        messages += [
            f"{key}: contains a NUL character (\\0), which cannot be stored."
            for key, value in values.items()
            if contains_nul(key) or contains_nul(value)
        ]
        for name in self.prompt_variables:
            if name not in values and name not in by_key and name not in skip:
                messages.append(f"{name}: the prompt uses {{{name}}}; give it a value.")
        return messages


def _parse_csv(text: str, checker: _RowChecker, check: RowCheck) -> list[tuple]:
    reader = csv.reader(io.StringIO(text, newline=""), csv_dialect(text))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        check.file_errors.append("The file is empty: add a header line and one row per run.")
        return []
    header = [name.strip() for name in header]
    problems = []
    if any(not name for name in header):
        problems.append("Line 1 (the header): a column has no name.")
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        problems.append(f"Line 1 (the header): repeated columns: {', '.join(duplicates)}.")
    problems += [f"Line 1 (the header): {m}" for m in checker.check_keys(n for n in header if n)]
    if problems:
        check.file_errors.extend(problems)
        return []

    parsed = []
    line = reader.line_num + 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if len(parsed) >= max_runs():
                check.file_errors.append(_too_many_rows())
                return []
            messages = []
            if len(cells) != len(header):
                messages.append(f"has {len(cells)} values; the header has {len(header)} columns.")
            values: dict[str, Any] = {}
            failed = set()
            for key, raw in zip(header, cells, strict=False):
                try:
                    value = checker.coerce_cell(key, raw)
                except ValidationError as exc:
                    messages.extend(f"{key}: {message}" for message in exc.messages)
                    failed.add(key)
                    continue
                if value is not None:
                    values[key] = value
            parsed.append((len(parsed) + 1, start, values, messages, failed))
    except csv.Error as exc:
        check.file_errors.append(f"Line {reader.line_num}: this is not valid CSV ({exc}).")
        return []
    return parsed


def _parse_jsonl(text: str, checker: _RowChecker, check: RowCheck) -> list[tuple]:
    parsed = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(parsed) >= max_runs():
            check.file_errors.append(_too_many_rows())
            return []
        number = len(parsed) + 1
        try:
            item = json.loads(raw)
        except ValueError as exc:
            parsed.append((number, line, None, [f"not valid JSON ({exc.msg})."], set()))
            continue
        if not isinstance(item, dict):
            parsed.append(
                (number, line, None, ['must be a JSON object: {"key": value, …}.'], set())
            )
            continue
        values = {str(key): value for key, value in item.items() if value is not None}
        parsed.append((number, line, values, checker.check_keys(values), set()))
    return parsed


def _too_many_rows() -> str:
    return f"The file has more than {max_runs()} rows; a batch is at most {max_runs()} runs."


# --- Step 2: the plan ---------------------------------------------------------------------------


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
    planned = []
    for row in rows:
        for model in models:
            for prompt in prompts:
                place = f"{row.number}|{model.pk if model else '-'}|{prompt.choice.value}"
                planned.append(
                    Run(
                        idempotency_key=uuid.uuid5(token, place),
                        workflow=workflow,
                        batch_row=row.number,
                        model_option=model,
                        **prompt.run_fields(),
                        input_values=dict(row.values),
                        launched_by=launched_by,
                        submission=Submission.QUEUED,
                        status=RunStatus.PENDING,
                    )
                )
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                workflow=workflow,
                name=name[:200],
                state=Batch.State.SUBMITTING,
                is_matrix=len(models) > 1 or len(prompts) > 1,
                created_by=launched_by,
            )
            for run in planned:
                run.batch = batch
            Run.objects.bulk_create(planned, batch_size=500)
            transaction.on_commit(lambda: _enqueue_submit(batch.pk))
    except IntegrityError:
        # The same form again: its runs (and batch) already exist.
        existing = Run.objects.filter(idempotency_key=planned[0].idempotency_key).first()
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


def _enqueue_submit(batch_id: int) -> None:
    from launcher.tasks import batch_submit_task  # tasks import services, not the reverse

    batch_submit_task.enqueue(batch_id)


# --- Step 3: sending ----------------------------------------------------------------------------


@dataclass
class SubmitReport:
    accepted: int = 0  # the API has the run (created now, or replayed from an earlier send)
    rejected: int = 0  # the API refused it; nothing runs
    unknown: int = 0  # no answer: the reconciler settles it with the same key
    deferred: int = 0  # throttled or unreachable: still queued, sent by the next task
    remaining: int = 0  # queued runs left when this call returned
    resume_in: float = 0.0  # seconds the next task should wait (a long Retry-After)
    fatal: str = ""  # a refusal that holds for every run (bad key, unknown workflow)

    def as_dict(self) -> dict:
        return asdict(self)


class _Senders:
    """State shared by the worker threads of one pass over a batch (sending its runs, or
    cancelling / retrying them): the queue, the pause after a 429, the counters of `report`."""

    def __init__(self, ids: Iterable[int], *, deadline: float | None, clock, sleep, report=None):
        self.queue = deque(ids)
        self.lock = threading.Lock()
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep
        self.paused_until = 0.0
        self.unreachable_streak = 0
        self.stop = False
        self.report = report if report is not None else SubmitReport()

    def next_id(self) -> int | None:
        """The next run to send, after any pause; None when done or out of time."""
        while True:
            with self.lock:
                if self.stop or not self.queue:
                    return None
                now = self.clock()
                wait = self.paused_until - now
                if self.deadline is not None and max(now, self.paused_until) >= self.deadline:
                    self.report.resume_in = max(self.report.resume_in, wait)
                    return None
                if wait <= 0:
                    return self.queue.popleft()
            self.sleep(min(wait, 1.0))  # re-check often: another sender may stop the batch

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)

    def put_back(self, run_id: int) -> None:
        with self.lock:
            self.queue.append(run_id)

    def count(self, outcome: str) -> None:
        with self.lock:
            setattr(self.report, outcome, getattr(self.report, outcome) + 1)


def batch_submit(
    *,
    batch: Batch,
    concurrency: int | None = None,
    time_budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SubmitReport:
    """Send the batch's queued runs, `concurrency` at a time (default `BATCH_CONCURRENCY`).

    Each run is claimed (compare-and-set on `synced_at`) before it is sent, so two senders —
    a resumed task and one thought dead — never send the same run at once; and even if they
    did, its stored key makes the API create it once. Outcomes:

    - accepted → the upstream id and status are recorded;
    - refused (400/422) → `rejected` with the API's message;
    - 429 → every sender pauses for Retry-After (capped), the run goes back in the queue;
    - unreachable (nothing sent) → the same, with a growing pause;
    - no answer (timeout after sending, 5xx) → `unknown`, settled by the reconciler with the
      same key;
    - a bad API key or an unknown workflow → this run and all the rest are `rejected`.

    With `time_budget` (seconds), no new send starts after it; the report says how many runs
    remain and how long the next attempt should wait. When none remain the batch is marked
    `submitted`.
    """
    concurrency = max(1, concurrency or settings.BATCH_CONCURRENCY)
    ids = list(
        Run.objects.filter(batch=batch, submission=Submission.QUEUED)
        .order_by("batch_row", "pk")
        .values_list("pk", flat=True)
    )
    deadline = clock() + time_budget if time_budget is not None else None
    senders = _Senders(ids, deadline=deadline, clock=clock, sleep=sleep)
    batch_state = Batch.objects.filter(pk=batch.pk).values_list("state", flat=True).first()
    if ids and batch_state != Batch.State.CANCELLED:
        _run_workers(senders, batch, min(concurrency, len(ids)), _send_one)

    report = senders.report
    if report.fatal:
        _reject_rest(batch, report.fatal)
    remaining = Run.objects.filter(batch=batch, submission=Submission.QUEUED)
    report.remaining = remaining.count()
    if report.remaining == 0:
        Batch.objects.filter(pk=batch.pk, state=Batch.State.SUBMITTING).update(
            state=Batch.State.SUBMITTED
        )
    elif not report.resume_in:
        # When every run left is held by another sender (a worker that died mid-send holds its
        # claim), look again when the oldest claim runs out, not in a busy loop.
        now = timezone.now()
        free = remaining.filter(Q(synced_at__isnull=True) | Q(synced_at__lte=now - CLAIM_TTL))
        if not free.exists():
            oldest = remaining.aggregate(oldest=Min("synced_at"))["oldest"]
            report.resume_in = max(1.0, (oldest + CLAIM_TTL - now).total_seconds() + 1)
    logger.info("Batch %s: %s", batch.pk, report.as_dict())
    return report


def _run_workers(
    senders: _Senders, batch: Batch, count: int, act: Callable[[_Senders, int], None]
) -> None:
    """Call `act(senders, run_id)` for each queued run, `count` threads at a time."""
    if count <= 1:
        _work_loop(senders, act, own_connection=False)
        return
    failures: list[BaseException] = []

    def work():
        try:
            _work_loop(senders, act, own_connection=True)
        except BaseException as exc:  # a dying worker: stop every sender, re-raise below
            senders.stop = True
            failures.append(exc)

    threads = [threading.Thread(target=work, name=f"batch-{batch.pk}-{n}") for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def _work_loop(
    senders: _Senders, act: Callable[[_Senders, int], None], *, own_connection: bool
) -> None:
    try:
        while (run_id := senders.next_id()) is not None:
            act(senders, run_id)
    finally:
        if own_connection:
            # Each thread has its own database connection; close it or it leaks.
            connection.close()


def _claim(run_id: int) -> Run | None:
    now = timezone.now()
    claimed = (
        Run.objects.filter(pk=run_id, submission=Submission.QUEUED)
        .filter(Q(synced_at__isnull=True) | Q(synced_at__lte=now - CLAIM_TTL))
        .update(synced_at=now, submission_attempts=F("submission_attempts") + 1)
    )
    if not claimed:
        return None
    return Run.objects.select_related("prompt_version").get(pk=run_id)


def _release(run_id: int) -> None:
    Run.objects.filter(pk=run_id, submission=Submission.QUEUED).update(synced_at=None)


def _send_one(senders: _Senders, run_id: int) -> None:
    with _database_turn():
        run = _claim(run_id)
    if run is None:
        return  # cancelled, already sent, or another sender has it
    try:
        upstream = get_client().create_run(
            idempotency_key=str(run.idempotency_key), **run_request(run)
        )
    except errors.CyberdeskError as exc:
        with _database_turn():
            _record_failure(senders, run, exc)
        return
    with senders.lock:
        senders.unreachable_streak = 0
    with _database_turn():
        run_apply_upstream(run, upstream)
    senders.count("accepted")
    if run.status == RunStatus.CANCELLED:
        # Just created upstream, yet cancelled here: the batch was cancelled on the way.
        _cancel_late_arrival(run)


def _record_failure(senders: _Senders, run: Run, exc: errors.CyberdeskError) -> None:
    if isinstance(exc, errors.RateLimited):
        wait = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_DEFAULT_WAIT
        logger.warning("Batch run %s: throttled; all senders wait %.1f s", run.pk, wait)
        _release(run.pk)
        senders.count("deferred")
        if wait > RATE_LIMIT_MAX_WAIT:
            with senders.lock:
                senders.stop = True
                senders.report.resume_in = max(senders.report.resume_in, wait)
            return
        senders.pause(wait)
        senders.put_back(run.pk)
    elif isinstance(exc, errors.NotSent):
        with senders.lock:
            senders.unreachable_streak += 1
            wait = min(UNREACHABLE_MAX_WAIT, 2.0**senders.unreachable_streak)
        logger.warning("Batch run %s: not sent (%s); waiting %.0f s", run.pk, exc, wait)
        _release(run.pk)
        senders.count("deferred")
        senders.pause(wait)
        senders.put_back(run.pk)
    elif isinstance(exc, errors.InvalidRequest):
        _reject(run, f"{exc} Nothing was started.")
        senders.count("rejected")
    elif isinstance(exc, errors.AuthError | errors.NotFound):
        # Holds for every run of the batch: stop, and say why on each run left.
        message = (
            f"{exc} Nothing was started; the batch stopped."
            if isinstance(exc, errors.AuthError)
            else f"{exc} Cyberdesk does not know this workflow (any more); nothing was started."
        )
        _reject(run, message)
        senders.count("rejected")
        with senders.lock:
            senders.stop = True
            senders.report.fatal = message
    else:
        # Sent, no usable answer: it may exist upstream. Never sent again with a new key; the
        # reconciler re-sends it with this one.
        Run.objects.filter(pk=run.pk, submission=Submission.QUEUED).update(
            submission=Submission.UNKNOWN, submission_error=str(exc)[:2000]
        )
        senders.count("unknown")
        logger.warning("Batch run %s: outcome unknown: %s", run.pk, exc)


_SQLITE_TURN = threading.Lock()


@contextmanager
def _database_turn():
    """SQLite has one writer at a time (and its in-memory shared-cache mode, used by tests,
    fails at once instead of waiting): there, sender threads take turns at the database. Their
    HTTP calls — the slow part — still overlap. Other databases need no turns."""
    if connection.vendor != "sqlite":
        yield
        return
    with _SQLITE_TURN:
        yield


def _cancel_late_arrival(run: Run) -> None:
    """The batch was cancelled while this run was on its way: cancel it upstream too."""
    try:
        upstream = get_client().cancel_run(run.cyberdesk_id)
    except errors.CyberdeskError as exc:
        logger.warning("Batch run %s: cancelling the late arrival failed: %s", run.pk, exc)
        return
    with _database_turn():
        run_apply_upstream(run, upstream)


def _reject(run: Run, message: str) -> None:
    Run.objects.filter(pk=run.pk).exclude(submission=Submission.ACCEPTED).update(
        submission=Submission.REJECTED, status=RunStatus.REJECTED, submission_error=message[:2000]
    )
    logger.warning("Batch run %s rejected: %s", run.pk, message)


def _reject_rest(batch: Batch, message: str) -> None:
    Run.objects.filter(batch=batch, submission=Submission.QUEUED).update(
        submission=Submission.REJECTED,
        status=RunStatus.REJECTED,
        submission_error=f"Not sent: {message}"[:2000],
    )


# --- Acting on a batch --------------------------------------------------------------------------
#
# "Cancel the rest" and "Retry failed runs" take one API call per run: for a big batch, minutes.
# So the request does only the local, instant part (in one transaction) and the worker does the
# calls (`launcher.tasks.batch_cancel_task` / `batch_retry_task`), `BATCH_CONCURRENCY` at a time,
# in slices like the sender. Each pass is safe to run twice: a run already cancelled or retried
# is skipped. While the worker has work left, `Batch.cancel_requested_at` /
# `retry_requested_at` is set and the batch page keeps polling.

FAILED_STATUSES = (RunStatus.TASK_FAILED, RunStatus.ERROR)
ACTION_FAILURES_KEPT = 20  # failure messages a report keeps (the rest are only logged)


@dataclass(frozen=True)
class BatchActionRequested:
    """What a click did at once, and what it left to the worker."""

    done_now: int = 0  # runs never sent, cancelled here (nothing ever runs for them)
    in_background: int = 0  # runs the worker will cancel / retry upstream


@dataclass
class BatchActionReport:
    """One worker pass over a batch's cancel or retry."""

    done: int = 0  # cancelled / retried upstream by this pass
    skipped: int = 0  # nothing to do any more (finished, already retried, no longer failed)
    failed: int = 0  # the API refused it; the run is left as it is
    deferred: int = 0  # throttled or unreachable: put back, tried again later
    remaining: int = 0  # runs left for the next pass
    resume_in: float = 0.0  # seconds the next pass should wait (a long Retry-After)
    fatal: str = ""  # a refusal that holds for every run (bad API key)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _active_upstream(batch: Batch):
    """The batch's runs the API has and that have not finished."""
    return Run.objects.filter(batch=batch, cyberdesk_id__isnull=False).exclude(
        status__in=TERMINAL_STATUSES
    )


def batch_cancel_rest(*, batch: Batch, user) -> BatchActionRequested:
    """Stop a batch. At once, in one transaction: the batch is `cancelled` (its sender sends
    nothing more) and its runs not sent yet are cancelled here — nothing ever runs for them. The
    runs the API has and that are still active are left to `batch_cancel_task`, enqueued when
    this commits (unless one is already on its way).

    A run on its way right now is caught by its sender, which cancels it upstream on arrival.
    """
    with transaction.atomic():
        locked = Batch.objects.select_for_update().get(pk=batch.pk)
        done_now = Run.objects.filter(batch=batch, submission=Submission.QUEUED).update(
            submission=Submission.REJECTED,
            status=RunStatus.CANCELLED,
            submission_error=CANCELLED_BEFORE_SENDING,
        )
        active = _active_upstream(batch).count()
        already_asked = locked.cancel_requested_at is not None
        requested_at = (locked.cancel_requested_at or timezone.now()) if active else None
        Batch.objects.filter(pk=batch.pk).update(
            state=Batch.State.CANCELLED, cancel_requested_at=requested_at
        )
        if active and not already_asked:
            user_id = getattr(user, "pk", None)
            transaction.on_commit(lambda: _enqueue_action("batch_cancel_task", batch.pk, user_id))
    batch.state = Batch.State.CANCELLED
    batch.cancel_requested_at = requested_at
    logger.info(
        "Batch %s cancelled by %s: %d never sent, %d to cancel upstream",
        batch.pk,
        getattr(user, "pk", None),
        done_now,
        active,
    )
    return BatchActionRequested(done_now=done_now, in_background=active)


def batch_retry_failed(*, batch: Batch, user) -> BatchActionRequested:
    """Ask for every failed or errored run of the batch to be retried (in place, `run_retry`).

    The request only records it: `retry_requested_at`, and a `batch_retry_task` (enqueued on
    commit) carrying each run with the attempt it failed in — the worker retries a run only
    while it is still at that attempt, so a run is retried once however often the task runs.
    """
    with transaction.atomic():
        Batch.objects.select_for_update().filter(pk=batch.pk).first()  # one request at a time
        targets = [
            [pk, attempt]
            for pk, attempt in Run.objects.filter(
                batch=batch, status__in=FAILED_STATUSES, cyberdesk_id__isnull=False
            )
            .order_by("batch_row", "pk")
            .values_list("pk", "attempt")
        ]
        if not targets:
            return BatchActionRequested()
        requested_at = timezone.now()
        Batch.objects.filter(pk=batch.pk).update(retry_requested_at=requested_at)
        user_id = getattr(user, "pk", None)
        transaction.on_commit(
            lambda: _enqueue_action(
                "batch_retry_task", batch.pk, targets, requested_at.isoformat(), user_id
            )
        )
    batch.retry_requested_at = requested_at
    logger.info(
        "Batch %s: retry of %d failed runs asked by %s",
        batch.pk,
        len(targets),
        getattr(user, "pk", None),
    )
    return BatchActionRequested(in_background=len(targets))


def _enqueue_action(task_name: str, *args) -> None:
    from launcher import tasks  # tasks import services, not the reverse

    getattr(tasks, task_name).enqueue(*args)


def batch_cancel_upstream(
    *,
    batch: Batch,
    user=None,
    concurrency: int | None = None,
    time_budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchActionReport:
    """The worker's part of "Cancel the rest": cancel (`run_cancel`) each run of the batch the
    API has and that is still active, `concurrency` at a time. A 429 pauses every worker
    thread for its Retry-After (a long one ends the pass: `remaining`, `resume_in`); an
    unreachable API puts the run back with a growing pause. When nothing is left to try,
    `cancel_requested_at` is cleared."""
    ids = list(_active_upstream(batch).order_by("batch_row", "pk").values_list("pk", flat=True))
    report = _act_on_runs(
        batch,
        ids,
        lambda senders, run_id: _cancel_one(senders, run_id, batch=batch, user=user),
        concurrency=concurrency,
        time_budget=time_budget,
        sleep=sleep,
        clock=clock,
    )
    if report.remaining == 0:
        Batch.objects.filter(pk=batch.pk).update(cancel_requested_at=None)
    logger.info("Batch %s cancel: %s", batch.pk, report.as_dict())
    return report


def batch_retry_upstream(
    *,
    batch: Batch,
    targets: Iterable[Sequence[int]],
    requested_at: str | None = None,
    user=None,
    concurrency: int | None = None,
    time_budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchActionReport:
    """The worker's part of "Retry failed runs": `targets` are `[run id, attempt]` pairs as
    the request saw them; each run of this batch still failed *at that attempt* is retried
    (`run_retry`, whose compare-and-set on `attempt` makes two workers retry it once). Throttling
    and an unreachable API are handled as for cancelling. When nothing is left to try,
    `retry_requested_at` is cleared (if no later request replaced it)."""
    attempts = {int(pk): int(attempt) for pk, attempt in targets}
    ids = [
        pk
        for pk, attempt in _still_failed(batch, attempts).values_list("pk", "attempt")
        if attempts[pk] == attempt
    ]
    report = _act_on_runs(
        batch,
        ids,
        lambda senders, run_id: _retry_one(
            senders, run_id, attempt=attempts[run_id], batch=batch, user=user
        ),
        concurrency=concurrency,
        time_budget=time_budget,
        sleep=sleep,
        clock=clock,
    )
    if report.remaining == 0:
        done = Batch.objects.filter(pk=batch.pk)
        if requested_at:
            done = done.filter(retry_requested_at__lte=requested_at)
        done.update(retry_requested_at=None)
    logger.info("Batch %s retry: %s", batch.pk, report.as_dict())
    return report


def _still_failed(batch: Batch, attempts: Mapping[int, int]):
    return Run.objects.filter(
        batch=batch, pk__in=list(attempts), status__in=FAILED_STATUSES, cyberdesk_id__isnull=False
    )


def _act_on_runs(batch, ids, act, *, concurrency, time_budget, sleep, clock) -> BatchActionReport:
    concurrency = max(1, concurrency or settings.BATCH_CONCURRENCY)
    deadline = clock() + time_budget if time_budget is not None else None
    senders = _Senders(ids, deadline=deadline, clock=clock, sleep=sleep, report=BatchActionReport())
    if ids:
        _run_workers(senders, batch, min(concurrency, len(ids)), act)
    # What this pass did not get to (out of time, or a long Retry-After), for the next pass. A
    # run the API refused is not tried again: that would go on for ever.
    senders.report.remaining = 0 if senders.report.fatal else len(senders.queue)
    return senders.report


def _cancel_one(senders: _Senders, run_id: int, *, batch: Batch, user) -> None:
    # Only this batch's runs, and only while still active: an earlier pass, a webhook or the
    # run's own end may have settled it. (On SQLite the whole call takes its database turn:
    # `run_cancel` writes the moment its answer comes.)
    with _database_turn():
        run = _active_upstream(batch).filter(pk=run_id).first()
        if run is None:
            senders.count("skipped")
            return
        try:
            run_cancel(run=run, user=user)
        except RunActionFailed as exc:
            # A cancel is safe to repeat: an answer lost on the way is tried again too.
            _action_failed(senders, run_id, exc, transient=errors.Unavailable)
            return
    senders.count("done")


def _retry_one(senders: _Senders, run_id: int, *, attempt: int, batch: Batch, user) -> None:
    with _database_turn():
        run = (
            Run.objects.filter(pk=run_id, batch=batch, attempt=attempt, status__in=FAILED_STATUSES)
            .exclude(cyberdesk_id=None)
            .first()
        )
        if run is None:
            senders.count("skipped")  # retried already (by an earlier pass), or no longer failed
            return
        try:
            run_retry(run=run, user=user)
        except RunActionFailed as exc:
            # `run_retry` put the attempt back unless the retry may have started (no answer):
            # only a retry that surely never started is tried again.
            _action_failed(senders, run_id, exc, transient=errors.NotSent)
            return
    senders.count("done")


def _action_failed(senders: _Senders, run_id: int, exc: RunActionFailed, *, transient) -> None:
    api_error = exc.api_error
    if isinstance(api_error, errors.RateLimited):
        wait = api_error.retry_after if api_error.retry_after is not None else 0.0
        wait = wait or RATE_LIMIT_DEFAULT_WAIT
        logger.warning("Batch run %s: throttled; every worker waits %.1f s", run_id, wait)
        senders.count("deferred")
        senders.put_back(run_id)
        if wait > RATE_LIMIT_MAX_WAIT:
            with senders.lock:
                senders.stop = True
                senders.report.resume_in = max(senders.report.resume_in, wait)
            return
        senders.pause(wait)
    elif isinstance(api_error, transient):
        with senders.lock:
            senders.unreachable_streak += 1
            wait = min(UNREACHABLE_MAX_WAIT, 2.0**senders.unreachable_streak)
        logger.warning("Batch run %s: %s; waiting %.0f s", run_id, exc, wait)
        senders.count("deferred")
        senders.put_back(run_id)
        senders.pause(wait)
    else:
        logger.warning("Batch run %s: %s", run_id, exc)
        with senders.lock:
            senders.report.failed += 1
            if len(senders.report.failures) < ACTION_FAILURES_KEPT:
                senders.report.failures.append(f"Run {run_id}: {exc}")
            if isinstance(api_error, errors.AuthError):
                senders.stop = True  # holds for every run: the next pass would fail the same way
                senders.report.fatal = str(api_error)
