"""The evidence gate: may a protected label (such as `production`) move to a candidate version?

The rule, applied wherever a label moves (the prompts page, the admin, `manage.py
move_prompt_label`: they all call `prompt_label_move`, which calls `promotion_evidence`):

1. **Enough runs.** In one finished batch (not cancelled, no run still queued or running) the
   candidate version has at least `PROMOTION_MIN_RUNS` finished runs. A finished run is one
   that reached an outcome (success, task failed, error); cancelled and rejected runs say
   nothing about the prompt and do not count. A canary's candidate arm counts the same way.
2. **Not significantly worse.** In that same batch, the candidate's success rate is compared
   with the current version's (the version the label points at now) by a one-sided Fisher exact
   test ("is the candidate's success rate lower?"), α = 0.05. Fisher, not a z-test, because the
   cells are small (20 runs) and the test is exact at any size. One-sided, because the gate only
   asks "is it worse?": a candidate that is as good is allowed to move. When the current version
   has no runs in the batch, its last `PROMOTION_MIN_RUNS` finished runs (any launch) are the
   comparison; when it has none at all (or the label is new), only rule 1 applies.

Without evidence the move is refused (`PromotionRefused`, saying what is missing); a user with
`launcher.promote_without_evidence` may move it anyway by writing a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from launcher.models import (
    TERMINAL_STATUSES,
    Batch,
    Canary,
    PromptVersion,
    Run,
    RunStatus,
    Workflow,
)
from launcher.services.stats import fisher_exact, wilson_interval

ALPHA = 0.05
OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)
# Batch states that are still planning or sending (this and later lifecycles): not finished.
_UNFINISHED_BATCH_STATES = ("submitting", "planned", "sending", "cancelled")
CANDIDATE_BATCHES_SHOWN = 20


def promotion_min_runs() -> int:
    return max(1, int(getattr(settings, "PROMOTION_MIN_RUNS", 20)))


@dataclass(frozen=True)
class Cell:
    """One version's runs in the evidence: finished runs, successes, 95% Wilson interval."""

    version_number: int
    source: str  # "Batch 12", "Sonnet · Batch 12", "last 20 runs", "canary 3, candidate arm"
    finished: int
    succeeded: int

    @property
    def rate(self) -> float | None:
        return self.succeeded / self.finished if self.finished else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.succeeded, self.finished)

    @property
    def display(self) -> str:
        """ "17/20 = 85% (95% CI 64–95%)"; "no finished runs"."""
        if not self.finished:
            return "no finished runs"
        low, high = self.interval
        return (
            f"{self.succeeded}/{self.finished} = {round(100 * self.rate)}% "
            f"(95% CI {round(100 * low)}–{round(100 * high)}%)"
        )

    def as_dict(self) -> dict:
        return {
            "version": self.version_number,
            "source": self.source,
            "succeeded": self.succeeded,
            "finished": self.finished,
        }


@dataclass(frozen=True)
class Evidence:
    """What a move of a protected label would rest on, and what is missing."""

    label: str
    candidate: PromptVersion
    current: PromptVersion | None
    min_runs: int
    batch: Batch | None = None
    canary: Canary | None = None
    candidate_cell: Cell | None = None
    current_cell: Cell | None = None
    cells: list[Cell] = field(default_factory=list)  # per model, for the form
    p_value: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def source_name(self) -> str:
        if self.batch is not None:
            return str(self.batch)
        if self.canary is not None:
            return str(self.canary)
        return ""

    @property
    def test_display(self) -> str:
        """The test result in words, for the form and the history."""
        if self.p_value is None:
            if self.current is None:
                return "No current version to compare with: only the number of runs counts."
            return f"No finished runs of v{self.current.number} to compare with."
        verdict = (
            f"< {ALPHA}: significantly worse."
            if self.p_value < ALPHA
            else f"≥ {ALPHA}: not significantly worse."
        )
        return (
            f"One-sided Fisher exact test, is v{self.candidate.number} worse than "
            f"v{self.current.number}: p = {self.p_value:.3g} {verdict}"
        )

    @property
    def message(self) -> str:
        """Why the move is refused: every missing piece in one sentence each."""
        return " ".join(self.problems)

    def snapshot(self) -> dict:
        """What the history keeps: the numbers as the person who moved the label saw them."""
        return {
            "min_runs": self.min_runs,
            "batch": self.batch.pk if self.batch else None,
            "canary": self.canary.pk if self.canary else None,
            "candidate": self.candidate_cell.as_dict() if self.candidate_cell else None,
            "current": self.current_cell.as_dict() if self.current_cell else None,
            "p_value": self.p_value,
            "test": self.test_display,
            "problems": list(self.problems),
        }


def batches_finished(workflow: Workflow):
    """The workflow's finished batches: not cancelled, nothing left to send, every run settled.
    (Subqueries, not joins: counting over a join of runs would multiply the counts.)"""
    unfinished = Run.objects.filter(batch=OuterRef("pk")).exclude(status__in=TERMINAL_STATUSES)
    return (
        Batch.objects.filter(workflow=workflow)
        .exclude(state__in=_UNFINISHED_BATCH_STATES)
        .filter(~Exists(unfinished))
    )


def promotion_batches(*, workflow: Workflow, version: PromptVersion) -> list[Batch]:
    """Finished batches with runs of `version`, newest first (the evidence a user can pick).
    One query; bounded."""
    return list(
        batches_finished(workflow)
        .filter(Exists(Run.objects.filter(batch=OuterRef("pk"), prompt_version=version)))
        .order_by("-created_at", "-pk")[:CANDIDATE_BATCHES_SHOWN]
    )


def _batch_counts(batch: Batch, versions: list[int]) -> dict[tuple[int, str], tuple[int, int]]:
    """(version id, model name) → (succeeded, finished) in `batch`: one aggregate query."""
    rows = (
        Run.objects.filter(batch=batch, prompt_version_id__in=versions, status__in=OUTCOMES)
        .values("prompt_version_id", "model_option__name")
        .annotate(
            finished=Count("pk"),
            succeeded=Count("pk", filter=Q(status=RunStatus.SUCCESS)),
        )
    )
    return {
        (row["prompt_version_id"], row["model_option__name"] or "Workflow default"): (
            row["succeeded"],
            row["finished"],
        )
        for row in rows
    }


def _recent_cell(version: PromptVersion, limit: int) -> Cell:
    """The version's last `limit` finished runs, from any launch."""
    statuses = list(
        Run.objects.filter(prompt_version=version, status__in=OUTCOMES)
        .order_by("-created_at", "-pk")
        .values_list("status", flat=True)[:limit]
    )
    return Cell(
        version_number=version.number,
        source=f"last {len(statuses)} runs" if statuses else "no runs",
        finished=len(statuses),
        succeeded=sum(1 for status in statuses if status == RunStatus.SUCCESS),
    )


def _pick_batch(*, workflow: Workflow, candidate: PromptVersion, min_runs: int) -> Batch | None:
    """The newest finished batch where the candidate has enough finished runs, else the newest
    finished batch with any of its runs (so the form can say how many are missing)."""
    finished_runs = (
        Run.objects.filter(batch=OuterRef("pk"), prompt_version=candidate, status__in=OUTCOMES)
        .order_by()
        .values("batch")
        .annotate(count=Count("pk"))
        .values("count")[:1]
    )
    batches = (
        batches_finished(workflow)
        .filter(Exists(Run.objects.filter(batch=OuterRef("pk"), prompt_version=candidate)))
        .annotate(candidate_finished=Coalesce(Subquery(finished_runs), 0))
        .order_by("-created_at", "-pk")
    )
    enough = batches.filter(candidate_finished__gte=min_runs).first()
    return enough or batches.first()


def promotion_evidence(
    *,
    workflow: Workflow,
    label: str,
    candidate: PromptVersion,
    current: PromptVersion | None,
    batch: Batch | None = None,
    canary: Canary | None = None,
) -> Evidence:
    """The evidence for moving `label` from `current` to `candidate`.

    `batch` (or `canary`) is the evidence the user chose; without either, the newest finished
    batch that qualifies is used. Never raises: what is missing is in `.problems`.
    """
    min_runs = promotion_min_runs()
    if canary is not None:
        return _canary_evidence(
            label=label, candidate=candidate, current=current, canary=canary, min_runs=min_runs
        )
    if batch is not None and (
        batch.workflow_id != workflow.pk
        or not batches_finished(workflow).filter(pk=batch.pk).exists()
    ):
        return Evidence(
            label=label,
            candidate=candidate,
            current=current,
            min_runs=min_runs,
            batch=batch,
            problems=[f"{batch} is not a finished batch of {workflow}."],
        )
    if batch is None:
        batch = _pick_batch(workflow=workflow, candidate=candidate, min_runs=min_runs)
    if batch is None:
        return Evidence(
            label=label,
            candidate=candidate,
            current=current,
            min_runs=min_runs,
            problems=[
                f"No finished batch has runs of v{candidate.number}: run a batch with it "
                f"({min_runs} finished runs at least) first."
            ],
        )

    versions = [candidate.pk] + ([current.pk] if current is not None else [])
    counts = _batch_counts(batch, versions)
    cells = [
        Cell(
            version_number=candidate.number if version_id == candidate.pk else current.number,
            source=f"{model} · {batch}",
            finished=finished,
            succeeded=succeeded,
        )
        for (version_id, model), (succeeded, finished) in sorted(
            counts.items(), key=lambda item: (item[0][1], item[0][0] != candidate.pk)
        )
    ]

    def pooled(version: PromptVersion) -> Cell:
        own = [value for (version_id, _), value in counts.items() if version_id == version.pk]
        return Cell(
            version_number=version.number,
            source=str(batch),
            finished=sum(finished for _, finished in own),
            succeeded=sum(succeeded for succeeded, _ in own),
        )

    candidate_cell = pooled(candidate)
    current_cell = None
    if current is not None:
        current_cell = pooled(current)
        if not current_cell.finished:
            current_cell = _recent_cell(current, min_runs)
    return _judge(
        label=label,
        candidate=candidate,
        current=current,
        min_runs=min_runs,
        batch=batch,
        candidate_cell=candidate_cell,
        current_cell=current_cell,
        cells=cells,
        where=f"in {batch}",
    )


def _canary_evidence(*, label, candidate, current, canary: Canary, min_runs: int) -> Evidence:
    arms = {
        row["canary_arm"]: (row["succeeded"], row["finished"])
        for row in Run.objects.filter(canary=canary, status__in=OUTCOMES)
        .values("canary_arm")
        .annotate(finished=Count("pk"), succeeded=Count("pk", filter=Q(status=RunStatus.SUCCESS)))
    }
    succeeded, finished = arms.get("candidate", (0, 0))
    candidate_cell = Cell(candidate.number, f"{canary}, candidate arm", finished, succeeded)
    current_cell = None
    if current is not None:
        succeeded, finished = arms.get("control", (0, 0))
        current_cell = Cell(current.number, f"{canary}, control arm", finished, succeeded)
        if not current_cell.finished:
            current_cell = _recent_cell(current, min_runs)
    problems = []
    if canary.candidate_version_id != candidate.pk:
        problems.append(
            f"{canary} tried v{canary.candidate_version.number}, not v{candidate.number}."
        )
    evidence = _judge(
        label=label,
        candidate=candidate,
        current=current,
        min_runs=min_runs,
        canary=canary,
        candidate_cell=candidate_cell,
        current_cell=current_cell,
        cells=[cell for cell in (candidate_cell, current_cell) if cell is not None],
        where=f"in {canary}",
    )
    if problems:
        return replace(evidence, problems=problems + evidence.problems)
    return evidence


def _judge(
    *,
    label: str,
    candidate: PromptVersion,
    current: PromptVersion | None,
    min_runs: int,
    candidate_cell: Cell,
    current_cell: Cell | None,
    cells: list[Cell],
    where: str,
    batch: Batch | None = None,
    canary: Canary | None = None,
) -> Evidence:
    problems = []
    if candidate_cell.finished < min_runs:
        problems.append(
            f"v{candidate.number} has {candidate_cell.finished} finished "
            f"run{'s' if candidate_cell.finished != 1 else ''} {where}; "
            f"{label} needs at least {min_runs}."
        )
    p_value = None
    if current_cell is not None and current_cell.finished:
        p_value = fisher_exact(
            candidate_cell.succeeded,
            candidate_cell.finished - candidate_cell.succeeded,
            current_cell.succeeded,
            current_cell.finished - current_cell.succeeded,
            alternative="less",
        )
        if p_value < ALPHA:
            problems.append(
                f"v{candidate.number} is significantly worse than v{current.number} "
                f"({candidate_cell.display} against {current_cell.display}; one-sided Fisher "
                f"p = {p_value:.3g} < {ALPHA})."
            )
    return Evidence(
        label=label,
        candidate=candidate,
        current=current,
        min_runs=min_runs,
        batch=batch,
        canary=canary,
        candidate_cell=candidate_cell,
        current_cell=current_cell,
        cells=cells,
        p_value=p_value,
        problems=problems,
    )
