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
