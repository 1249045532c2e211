"""Test data for the batch page's "Which is better" region: batches whose cells have chosen
outcomes (tests of launcher.batch_grid, launcher.batch_rows, the clusters and the views)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from launcher.models import Batch, PromptMode, Run, RunStatus, Submission
from tests.launch_api import NOW


def add_runs(
    batch: Batch,
    *,
    model=None,
    version=None,
    successes: int = 0,
    failures: int = 0,
    errors: list[str] | None = None,
    checks: list[dict] | None = None,
    seconds: int = 30,
    first_row: int = 1,
    **fields,
) -> list[Run]:
    """`successes` then `failures` finished runs in one cell, on rows first_row, first_row+1…;
    failure n carries `errors[n % len(errors)]` (default: none)."""
    runs = []
    for n in range(successes + failures):
        failed = n >= successes
        message = errors[(n - successes) % len(errors)] if failed and errors else None
        runs.append(
            Run.objects.create(
                workflow=batch.workflow,
                batch=batch,
                batch_row=first_row + n,
                cyberdesk_id=uuid.uuid4(),
                submission=Submission.ACCEPTED,
                status=RunStatus.TASK_FAILED if failed else RunStatus.SUCCESS,
                model_option=model,
                prompt_mode=PromptMode.PINNED if version else PromptMode.STORED,
                prompt_version=version,
                started_at=NOW,
                ended_at=NOW + timedelta(seconds=seconds + n),
                errors=[message] if message else [],
                post_run_checks=checks or [],
                input_values={"customer_id": f"c-{first_row + n}"},
                **fields,
            )
        )
    return runs
