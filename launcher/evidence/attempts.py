"""The read side of a run's evidence: its attempts, its history, and what its pages show of
one attempt (results, usage as numbers, the timeline, inputs as a person reads them).

A run's current attempt lives on the `Run` row; earlier ones in `RunAttempt` (kept by
`run_retry`). Both have the same field names, so the pages and these helpers take either.
Every function here costs a fixed number of queries, whatever the number of attempts, history
entries or messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from launcher.evidence.readable import InputRow, UsageRow, inputs_readable, usage_readable
from launcher.evidence.timeline import Step, timeline_steps
from launcher.models import Run, RunAttempt, RunEvent, RunStatus

HISTORY_LIMIT = 200  # entries shown on a run page (newest kept); older ones are counted out


@dataclass(frozen=True)
class AttemptSummary:
    """One line of a run's Attempts section: "Attempt 1 · Success · 28s · $0.05"."""

    number: int
    status: str
    status_display: str
    duration: timedelta | None
    cost_usd: Decimal | None
    is_current: bool


def run_attempt_summaries(run: Run) -> list[AttemptSummary]:
    """Every attempt of `run`, oldest first, the current one last. One query (the kept
    attempts, without their heavy JSON columns)."""
    kept = RunAttempt.objects.filter(run_id=run.pk, number__lt=run.attempt).only(
        "number", "status", "started_at", "ended_at", "cost_usd", "run_id"
    )
    rows = [
        AttemptSummary(
            number=attempt.number,
            status=attempt.status,
            status_display=attempt.get_status_display(),
            duration=attempt.duration,
            cost_usd=attempt.cost_usd,
            is_current=False,
        )
        for attempt in kept.order_by("number")
    ]
    rows.append(
        AttemptSummary(
            number=run.attempt,
            status=run.status,
            status_display=run.get_status_display(),
            duration=run.duration,
            cost_usd=run.cost_usd,
            is_current=True,
        )
    )
    return rows


def run_attempt_get(run: Run, number: int) -> Run | RunAttempt | None:
    """Attempt `number` of `run`: the run itself for its current attempt, a kept attempt for an
    earlier one, None for a number it never had. At most one query."""
    if number == run.attempt:
        return run
    if number < 1 or number > run.attempt:
        return None
    return RunAttempt.objects.filter(run_id=run.pk, number=number).first()


@dataclass
class HistoryPage:
    events: list[RunEvent]
    older_hidden: bool  # more entries exist before the first one shown


def run_history(run: Run) -> HistoryPage:
    """The run's history, oldest first, the newest `HISTORY_LIMIT` entries. One query."""
    newest = list(
        RunEvent.objects.filter(run_id=run.pk)
        .select_related("actor")
        .order_by("-at", "-id")[: HISTORY_LIMIT + 1]
    )
    older_hidden = len(newest) > HISTORY_LIMIT
    return HistoryPage(events=list(reversed(newest[:HISTORY_LIMIT])), older_hidden=older_hidden)


@dataclass
class AttemptEvidence:
    """What the pages show of one attempt (the run's current one or a kept one)."""

    number: int
    source: Run | RunAttempt
    usage: list[UsageRow]
    steps: list[Step]
    output_json: str
    usage_json: str
    history_json: str
    message_count: int

    @property
    def status(self) -> str:
        return self.source.status


def attempt_evidence(source: Run | RunAttempt, *, number: int) -> AttemptEvidence:
    """Usage rows, timeline steps and the raw JSON of one attempt. No query."""
    history = source.message_history
    finished = source.status in _FINISHED
    return AttemptEvidence(
        number=number,
        source=source,
        usage=usage_readable(source.usage_metadata, source.cost_usd, finished=finished),
        steps=timeline_steps(history),
        output_json=pretty_json(source.output_data),
        usage_json=pretty_json(source.usage_metadata),
        history_json=pretty_json(history),
        message_count=len(history) if isinstance(history, list) else 0,
    )


_FINISHED = {
    RunStatus.SUCCESS,
    RunStatus.TASK_FAILED,
    RunStatus.ERROR,
    RunStatus.CANCELLED,
    RunStatus.REJECTED,
}


def run_inputs_readable(run: Run) -> list[InputRow]:
    """The run's inputs as a person reads them (needs `run.workflow` loaded for the schema)."""
    return inputs_readable(
        input_values=run.input_values,
        input_schema=run.workflow.input_schema,
        sensitive_input_keys=run.sensitive_input_keys,
        file_input_fields=run.file_input_fields,
        file_input_names=run.file_input_names,
    )


def pretty_json(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
