"""A run's history (`RunEvent`): one row per thing that happened to it, written by the code that
made it happen — in the same transaction as the change it describes, so the history never
claims a change that was rolled back, nor misses one that was kept.

Sources: `user` (a person pressed a button), `launcher` (this app sent or concluded something),
`poll` (a page's refresh), `webhook`, `reconciler`, `batch` (the batch sender).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from launcher.models import Run, RunEvent

Kind = RunEvent.Kind
Source = RunEvent.Source


def run_event_record(
    *,
    run: Run,
    kind: str,
    source: str,
    actor=None,
    detail: dict[str, Any] | None = None,
    attempt: int | None = None,
    at=None,
) -> RunEvent:
    """Store one history entry for `run` (its current attempt unless `attempt` is given)."""
    return RunEvent.objects.create(
        run_id=run.pk,
        attempt=attempt if attempt is not None else run.attempt,
        kind=kind,
        source=source,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        detail=detail or {},
        at=at or timezone.now(),
    )


def run_events_record_launched(*, runs: list[Run], actor, source: str, batch_id=None) -> None:
    """A `launched` entry for each of many runs stored at once (a batch's plan). The runs must
    have their primary keys (bulk_create returns them on PostgreSQL and SQLite)."""
    now = timezone.now()
    actor = actor if getattr(actor, "is_authenticated", False) else None
    RunEvent.objects.bulk_create(
        [
            RunEvent(
                run_id=run.pk,
                attempt=run.attempt,
                kind=Kind.LAUNCHED,
                source=source,
                actor=actor,
                detail={
                    "model": run.model_option.name if run.model_option else "Workflow default",
                    "model_id": str(run.model_option_id) if run.model_option_id else None,
                    "prompt": _prompt_description(run),
                    "prompt_version": run.prompt_version.number if run.prompt_version else None,
                    "prompt_sha256": run.prompt_sha256,
                    "batch": batch_id,
                },
                at=now,
            )
            for run in runs
        ],
        batch_size=500,
    )


def _prompt_description(run: Run) -> str:
    """As `ResolvedPrompt.description`: "Workflow's stored prompt", "latest (v3)",
    "production (v2)", "v2"."""
    version = run.prompt_version
    if run.prompt_mode == "stored" or version is None:
        return "Workflow's stored prompt"
    if run.prompt_mode == "latest":
        return f"latest (v{version.number})"
    if run.prompt_mode == "label":
        return f"{run.prompt_label} (v{version.number})"
    return f"v{version.number}"


def run_events_record_many(
    *, run_ids: list[int], kind: str, source: str, actor=None, detail: dict | None = None
) -> None:
    """The same entry for many runs changed by one UPDATE (their first attempt: runs a batch
    never sent)."""
    now = timezone.now()
    actor = actor if getattr(actor, "is_authenticated", False) else None
    RunEvent.objects.bulk_create(
        [
            RunEvent(
                run_id=run_id,
                kind=kind,
                source=source,
                actor=actor,
                detail=detail or {},
                at=now,
            )
            for run_id in run_ids
        ],
        batch_size=500,
    )


def run_events_record_changed(
    *,
    candidate_ids: list[int],
    changed: dict[str, Any],
    kind: str,
    source: str,
    actor=None,
    detail: dict | None = None,
) -> None:
    """The same entry for those of `candidate_ids` that one UPDATE just changed: the runs that
    now match `changed` (field lookups). A run another writer took in between does not match
    and gets no entry. Ids are read 500 at a time, so the IN lists stay bounded."""
    for start in range(0, len(candidate_ids), 500):
        run_ids = Run.objects.filter(
            pk__in=candidate_ids[start : start + 500], **changed
        ).values_list("pk", flat=True)
        run_events_record_many(
            run_ids=list(run_ids), kind=kind, source=source, actor=actor, detail=detail
        )
