"""Canaries: a protected label sends a share of its launches to a candidate version, and the
reconciler stops the canary by itself when the candidate is significantly worse.

Routing (`canary_route`): a launch that resolves the label (single launches and batch rows)
takes the candidate when the first 8 hex digits of sha256(its idempotency key) mod 100 fall
below the share. The key is stored before the run is sent, so a re-send or a re-posted batch
form takes the same arm; the run records its canary and arm.

The stopping rule (`canaries_evaluate`, each reconciler pass) — **alpha spending over
doubling looks**: look k (k = 1, 2, 3…) is taken once the candidate arm has
`CANARY_FIRST_LOOK_RUNS` × 2^(k−1) finished runs (10, 20, 40, 80… by default). It is a one-sided
Fisher exact test (is the candidate's success rate lower than the control arm's?) at
α_k = α / 2^k (`stats.canary_look_alpha`, α = 0.05). However many looks are taken, the chance
of stopping a candidate that is in truth as good as the control stays ≤ α/2 + α/4 + … < α:
watching the numbers every 30 s does not inflate the false-stop rate, which an uncorrected
test at each pass would (it would eventually "find" a difference by chance). Doubling the runs
between looks keeps each look able to detect a real drop although its α halves. Each look is
recorded on the canary (`looks`), and a stop says why in `end_reason`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, replace

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from launcher.models import Canary, PromptLabel, PromptMode, PromptVersion, Run, RunStatus
from launcher.services.prompts import (
    MOVE_PRODUCTION_LABEL,
    PromptError,
    ResolvedPrompt,
    prompt_label_move,
)
from launcher.services.stats import canary_look_alpha, fisher_exact, wilson_interval

logger = logging.getLogger(__name__)

ALPHA = 0.05
CANDIDATE = "candidate"
CONTROL = "control"
OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)


class CanaryInvalid(PromptError):
    """A canary that cannot start or end as asked; the message is safe to show."""


def canary_first_look_runs() -> int:
    return max(1, int(getattr(settings, "CANARY_FIRST_LOOK_RUNS", 10)))


def canary_look_runs(look: int) -> int:
    """Finished candidate runs needed before look `look` (1-based): 10, 20, 40, …"""
    return canary_first_look_runs() * 2 ** (look - 1)


# --- Routing ------------------------------------------------------------------------------------


def canary_arm_for(routing_key: uuid.UUID | str, share_percent: int) -> str:
    """The arm a run takes, from its idempotency key alone (deterministic, uniform)."""
    bucket = int(hashlib.sha256(str(routing_key).encode()).hexdigest()[:8], 16) % 100
    return CANDIDATE if bucket < share_percent else CONTROL


def canary_running(*, workflow_id, label: str) -> Canary | None:
    """The label's running canary (with both versions), if any. One query."""
    return (
        Canary.objects.select_related("candidate_version", "control_version")
        .filter(label__workflow_id=workflow_id, label__name=label, state=Canary.State.RUNNING)
        .first()
    )


_LOOK_UP = object()


def canary_route(
    resolved: ResolvedPrompt, *, routing_key: uuid.UUID | str, canary=_LOOK_UP
) -> ResolvedPrompt:
    """`resolved` as this run takes it: when it resolved a label with a running canary, the
    candidate version for the canary's share of keys, else the label's version; either way
    marked with the canary and the arm. Other choices come back unchanged.

    Pass `canary` (a Canary or None) when already looked up (a batch plans many runs).
    """
    if resolved.mode != PromptMode.LABEL or resolved.version is None:
        return resolved
    if canary is _LOOK_UP:
        canary = canary_running(workflow_id=resolved.version.workflow_id, label=resolved.label)
    if canary is None or canary.control_version_id != resolved.version.pk:
        # No canary, or the label moved since it started (the move ends it).
        return resolved
    arm = canary_arm_for(routing_key, canary.share_percent)
    version = canary.candidate_version if arm == CANDIDATE else resolved.version
    return replace(
        resolved,
        version=version,
        text=version.text,
        sha256=version.sha256,
        canary_id=canary.pk,
        canary_arm=arm,
    )


# --- Start, stop, promote -----------------------------------------------------------------------


def canary_start(
    *, label: PromptLabel, candidate: PromptVersion, share_percent: int, user
) -> Canary:
    """Start a canary on a protected label. Needs the permission to move that label."""
    if not (user and user.has_perm(MOVE_PRODUCTION_LABEL)):
        raise PermissionDenied("Running a canary needs the permission to move the label.")
    if not label.protected:
        raise CanaryInvalid(f"Only a protected label runs a canary; {label.name} is not protected.")
    if candidate.workflow_id != label.workflow_id:
        raise CanaryInvalid("The candidate must be a version of the same workflow.")
    if candidate.pk == label.version_id:
        raise CanaryInvalid(f"{label.name} already points at v{candidate.number}.")
    if not isinstance(share_percent, int) or not 1 <= share_percent <= 50:
        raise CanaryInvalid("The candidate's share is a whole number from 1 to 50 %.")
    try:
        with transaction.atomic():
            canary = Canary.objects.create(
                label=label,
                control_version_id=label.version_id,
                candidate_version=candidate,
                share_percent=share_percent,
                started_by=user,
            )
    except IntegrityError:
        raise CanaryInvalid(
            f"{label.name} already runs a canary: stop it or promote it first."
        ) from None
    logger.info(
        "canary %s started on %s of workflow %s: v%s for %s%%",
        canary.pk,
        label.name,
        label.workflow_id,
        candidate.number,
        share_percent,
    )
    return canary


def _end(canary: Canary, *, state: str, user, reason: str) -> bool:
    """End a running canary (compare-and-set on its state). True when this call ended it."""
    ended = Canary.objects.filter(pk=canary.pk, state=Canary.State.RUNNING).update(
        state=state, ended_by=user, ended_at=timezone.now(), end_reason=reason[:500]
    )
    if ended:
        canary.refresh_from_db()
        logger.info("canary %s %s: %s", canary.pk, state, reason)
    return bool(ended)


def canary_stop(*, canary: Canary, user, reason: str = "") -> Canary:
    """Stop a canary by hand: its label keeps its version; later launches all take it."""
    if not (user and user.has_perm(MOVE_PRODUCTION_LABEL)):
        raise PermissionDenied("Stopping a canary needs the permission to move the label.")
    if canary.state != Canary.State.RUNNING:
        raise CanaryInvalid(f"{canary} has already ended.")
    name = getattr(user, "get_username", lambda: "")()
    _end(
        canary,
        state=Canary.State.STOPPED,
        user=user,
        reason=(reason or "").replace("\x00", "").strip() or f"Stopped by {name or 'a user'}.",
    )
    return canary


def canary_promote(
    *, canary: Canary, user, reason: str = "", without_evidence: bool = False
) -> PromptLabel:
    """End a canary by moving its label to the candidate: the evidence gate applies, with the
    canary's own arms as the evidence. Raises `PromotionRefused` like any move."""
    if canary.state != Canary.State.RUNNING:
        raise CanaryInvalid(f"{canary} has already ended.")
    return prompt_label_move(
        workflow=canary.label.workflow,
        name=canary.label.name,
        version=canary.candidate_version,
        user=user,
        reason=reason,
        evidence_canary=canary,
        without_evidence=without_evidence,
    )


def canary_end_on_move(*, label: PromptLabel, user) -> None:
    """Called by `prompt_label_move`: a label that moves ends its running canary (promoted
    when it moved to the candidate, stopped otherwise): its control arm no longer exists."""
    for canary in Canary.objects.filter(label=label, state=Canary.State.RUNNING).select_related(
        "candidate_version"
    ):
        if label.version_id == canary.candidate_version_id:
            _end(
                canary,
                state=Canary.State.PROMOTED,
                user=user,
                reason=f"{label.name} moved to the candidate v{canary.candidate_version.number}.",
            )
        else:
            _end(
                canary,
                state=Canary.State.STOPPED,
                user=user,
                reason=f"{label.name} moved to v{label.version.number}.",
            )


# --- Numbers and evaluation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    name: str  # "control" / "candidate"
    version_number: int
    runs: int
    finished: int
    succeeded: int

    @property
    def rate(self) -> float | None:
        return self.succeeded / self.finished if self.finished else None

    @property
    def percent(self) -> int | None:
        return None if self.rate is None else round(100 * self.rate)

    @property
    def interval_percent(self) -> tuple[int, int]:
        low, high = wilson_interval(self.succeeded, self.finished)
        return round(100 * low), round(100 * high)


@dataclass(frozen=True)
class CanaryView:
    canary: Canary
    control: Arm
    candidate: Arm
    next_look: int
    next_look_runs: int


def canary_arms(canaries: list[Canary]) -> list[CanaryView]:
    """Both arms of each canary (runs, finished, succeeded): one aggregate query for all."""
    counts: dict[tuple[int, str], dict] = {}
    if canaries:
        for row in (
            Run.objects.filter(canary__in=[c.pk for c in canaries])
            .values("canary_id", "canary_arm")
            .annotate(
                runs=Count("pk"),
                finished=Count("pk", filter=Q(status__in=OUTCOMES)),
                succeeded=Count("pk", filter=Q(status=RunStatus.SUCCESS)),
            )
        ):
            counts[(row["canary_id"], row["canary_arm"])] = row
    views = []
    for canary in canaries:

        def arm(name: str, number: int, canary=canary) -> Arm:
            row = counts.get((canary.pk, name), {})
            return Arm(
                name=name,
                version_number=number,
                runs=row.get("runs", 0),
                finished=row.get("finished", 0),
                succeeded=row.get("succeeded", 0),
            )

        look = len(canary.looks or []) + 1
        views.append(
            CanaryView(
                canary=canary,
                control=arm(CONTROL, canary.control_version.number),
                candidate=arm(CANDIDATE, canary.candidate_version.number),
                next_look=look,
                next_look_runs=canary_look_runs(look),
            )
        )
    return views


def canaries_evaluate() -> list[Canary]:
    """One evaluation pass over every running canary (the reconciler calls it). Returns the
    canaries it stopped. Queries: one for the canaries, one for their arms, and one write per
    look taken — nothing per run."""
    running = list(
        Canary.objects.filter(state=Canary.State.RUNNING).select_related(
            "candidate_version", "control_version", "label"
        )
    )
    stopped = []
    for view in canary_arms(running):
        canary, control, candidate = view.canary, view.control, view.candidate
        if candidate.finished < view.next_look_runs or not control.finished:
            continue
        alpha = canary_look_alpha(view.next_look, alpha=ALPHA)
        p_value = fisher_exact(
            candidate.succeeded,
            candidate.finished - candidate.succeeded,
            control.succeeded,
            control.finished - control.succeeded,
            alternative="less",
        )
        look = {
            "look": view.next_look,
            "at": timezone.now().isoformat(),
            "candidate": [candidate.succeeded, candidate.finished],
            "control": [control.succeeded, control.finished],
            "p_value": p_value,
            "alpha": alpha,
        }
        worse = p_value < alpha
        with transaction.atomic():
            locked = Canary.objects.select_for_update().filter(pk=canary.pk).first()
            if locked is None or locked.state != Canary.State.RUNNING:
                continue
            if len(locked.looks or []) + 1 != view.next_look:
                continue  # another reconciler took this look
            locked.looks = [*(locked.looks or []), look]
            update = ["looks"]
            if worse:
                locked.state = Canary.State.STOPPED
                locked.ended_at = timezone.now()
                locked.end_reason = (
                    f"Stopped by itself at look {view.next_look}: candidate "
                    f"v{candidate.version_number} succeeded {candidate.succeeded}/"
                    f"{candidate.finished}, control v{control.version_number} "
                    f"{control.succeeded}/{control.finished}; one-sided Fisher p = "
                    f"{p_value:.3g} < α{view.next_look} = {alpha:.3g} (α = {ALPHA} spent as "
                    f"α/2^k over looks)."
                )[:500]
                update += ["state", "ended_at", "end_reason"]
            locked.save(update_fields=update)
        if worse:
            logger.warning("canary %s stopped: %s", canary.pk, locked.end_reason)
            stopped.append(locked)
    return stopped
