"""Comparing two runs, or two attempts of runs: `/runs/compare/?a=<ref>&b=<ref>`.

A reference is a run id ("42": its current attempt) or a run id and an attempt ("42.1").
Loading both sides costs a fixed number of queries (the two runs in one, their kept attempts
in at most one more), whatever the size of their histories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from launcher.evidence.attempts import AttemptEvidence, attempt_evidence, run_inputs_readable
from launcher.evidence.readable import InputRow, StructuralDiff, structural_diff
from launcher.evidence.timeline import timeline_action_count
from launcher.models import Run, RunAttempt, RunStatus
from launcher.selectors import duration_display

COUNTERPART_WINDOW = 500  # newest successful runs searched for the same inputs
_REF = re.compile(r"^#?(\d{1,18})(?:\.(\d{1,4}))?$")
_RELATIONS = ("workflow", "model_option", "prompt_version")


class CompareRefInvalid(ValueError):
    """A reference that is not "<run>" or "<run>.<attempt>"; the message is safe to show."""


@dataclass(frozen=True)
class CompareRef:
    run_id: int
    attempt: int | None = None  # None: the run's current attempt

    @property
    def value(self) -> str:
        return f"{self.run_id}.{self.attempt}" if self.attempt else str(self.run_id)


def compare_ref_parse(value: str) -> CompareRef:
    text = (value or "").strip()
    match = _REF.match(text) if text.isascii() else None
    if not match:
        raise CompareRefInvalid("Enter a run number such as 42, or a run and attempt such as 42.1.")
    run_id = int(match.group(1))
    attempt = int(match.group(2)) if match.group(2) else None
    if not 0 < run_id < 2**63 or attempt == 0:
        raise CompareRefInvalid("Enter a run number such as 42, or a run and attempt such as 42.1.")
    return CompareRef(run_id=run_id, attempt=attempt)


@dataclass
class CompareSide:
    ref: CompareRef
    run: Run
    attempt_number: int
    evidence: AttemptEvidence
    inputs: list[InputRow]
    action_count: int

    @property
    def source(self):
        return self.evidence.source

    @property
    def label(self) -> str:
        return f"Run {self.run.pk} · attempt {self.attempt_number}"

    @property
    def model_label(self) -> str:
        return self.run.model_option.name if self.run.model_option else "Workflow default"

    @property
    def prompt_label(self) -> str:
        version = self.run.prompt_version
        if version is None:
            return "Workflow's stored prompt"
        if self.run.prompt_mode == "stored":
            return f"Workflow's stored prompt (recorded as v{version.number})"
        if self.run.prompt_label:
            return f"v{version.number} (via {self.run.prompt_label})"
        return f"v{version.number}"

    @property
    def prompt_text(self) -> str:
        if self.run.prompt_version is not None:
            return self.run.prompt_version.text
        return self.run.workflow.main_prompt or ""


def compare_sides(refs: list[CompareRef]) -> dict[CompareRef, CompareSide | str]:
    """Each reference's side, or a message saying why it cannot be shown. Two queries at most."""
    runs = Run.objects.select_related(*_RELATIONS).in_bulk({ref.run_id for ref in refs})
    wanted = [
        (ref.run_id, ref.attempt)
        for ref in refs
        if ref.run_id in runs and ref.attempt and ref.attempt != runs[ref.run_id].attempt
    ]
    kept: dict[tuple[int, int], RunAttempt] = {}
    if wanted:
        query = RunAttempt.objects.none()
        for run_id, number in wanted:
            query = query | RunAttempt.objects.filter(run_id=run_id, number=number)
        kept = {(attempt.run_id, attempt.number): attempt for attempt in query}
    sides: dict[CompareRef, CompareSide | str] = {}
    for ref in refs:
        run = runs.get(ref.run_id)
        if run is None:
            sides[ref] = f"There is no run {ref.run_id}."
            continue
        number = ref.attempt or run.attempt
        source = run if number == run.attempt else kept.get((run.pk, number))
        if source is None:
            sides[ref] = f"Run {run.pk} has no attempt {number} (it has {run.attempt})."
            continue
        evidence = attempt_evidence(source, number=number)
        sides[ref] = CompareSide(
            ref=ref,
            run=run,
            attempt_number=number,
            evidence=evidence,
            inputs=run_inputs_readable(run),
            action_count=timeline_action_count(source.message_history),
        )
    return sides


@dataclass(frozen=True)
class PairRow:
    label: str
    left: str
    right: str

    @property
    def same(self) -> bool:
        return self.left == self.right


@dataclass
class Comparison:
    a: CompareSide
    b: CompareSide
    facts: list[PairRow]
    inputs: list[PairRow]
    usage: list[PairRow]
    checks: list[PairRow]
    output: StructuralDiff
    same_prompt: bool


def compare_build(a: CompareSide, b: CompareSide) -> Comparison:
    """Everything the compare page lines up, row by row. No query."""
    facts = [
        PairRow("Workflow", str(a.run.workflow), str(b.run.workflow)),
        PairRow("Model", a.model_label, b.model_label),
        PairRow("Prompt", a.prompt_label, b.prompt_label),
        PairRow("Status", a.source.get_status_display(), b.source.get_status_display()),
        PairRow("Duration", _duration(a.source.duration), _duration(b.source.duration)),
        PairRow("Steps (tool actions)", str(a.action_count), str(b.action_count)),
        PairRow("Messages", str(a.evidence.message_count), str(b.evidence.message_count)),
        PairRow("Errors", _errors(a.source.errors), _errors(b.source.errors)),
    ]
    return Comparison(
        a=a,
        b=b,
        facts=facts,
        inputs=_aligned(
            [(row.key, _input_text(row)) for row in a.inputs],
            [(row.key, _input_text(row)) for row in b.inputs],
        ),
        usage=_aligned(
            [(row.label, row.value) for row in a.evidence.usage],
            [(row.label, row.value) for row in b.evidence.usage],
        ),
        checks=_aligned(_checks(a.source.post_run_checks), _checks(b.source.post_run_checks)),
        output=structural_diff(a.source.output_data, b.source.output_data),
        same_prompt=a.prompt_text == b.prompt_text,
    )


def _aligned(left: list[tuple[str, str]], right: list[tuple[str, str]]) -> list[PairRow]:
    right_map = dict(right)
    left_map = dict(left)
    labels = [label for label, _ in left] + [label for label, _ in right if label not in left_map]
    return [PairRow(label, left_map.get(label, "—"), right_map.get(label, "—")) for label in labels]


def _input_text(row: InputRow) -> str:
    if row.kind in ("list", "object"):
        return ", ".join(row.items) if row.items else "(empty)"
    return row.value


def _checks(checks) -> list[tuple[str, str]]:
    rows = []
    for index, check in enumerate(checks or []):
        if not isinstance(check, dict):
            continue
        name = str(check.get("name") or f"Check {index + 1}")
        status = str(check.get("status") or "—")
        error = check.get("error_message")
        rows.append((name, f"{status}: {error}" if error else status))
    return rows


def _errors(errors) -> str:
    return "; ".join(str(error) for error in errors) if errors else "none"


def _duration(value) -> str:
    return duration_display(value) or "—"


# --- The Compare link's default counterpart ---------------------------------------------------


def compare_counterpart(run: Run) -> CompareRef | None:
    """What a run is most usefully compared with, in this order: its previous attempt; the
    newest successful run of the same workflow with the same inputs (among its newest
    `COUNTERPART_WINDOW` successes); the newest successful run of that workflow. None when there
    is nothing. At most two queries, each bounded whatever the size of the history."""
    if run.attempt > 1:
        return CompareRef(run_id=run.pk, attempt=run.attempt - 1)
    successes = (
        Run.objects.filter(workflow_id=run.workflow_id, status=RunStatus.SUCCESS)
        .exclude(pk=run.pk)
        .order_by("-created_at", "-id")
    )
    # Only among the newest successes: inputs are not indexed, and this must not read the whole
    # history of a busy workflow to find that no run had the same inputs.
    recent = successes.values("pk")[:COUNTERPART_WINDOW]
    same_inputs = (
        Run.objects.filter(pk__in=recent, input_values=run.input_values or {})
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )
    if same_inputs is not None:
        return CompareRef(run_id=same_inputs)
    newest = successes.values_list("pk", flat=True).first()
    return CompareRef(run_id=newest) if newest is not None else None
