"""Short fingerprints of what a polled region shows, so a poll that finds nothing new is
answered without rendering.

A polled region carries the fingerprint of its own render, and each poll sends it back in the
`X-Poll-Version` header (`hx-headers` on the region; the URL stays the page's own). The view
reads the rows it would render anyway (one query), computes the fingerprint of what it would
show, and when it equals the one the page holds answers `204 No Content`, which htmx does not
swap: no template, no JSON pretty-printing, a few hundred bytes less on the wire. Anything the
region shows goes into the fingerprint, so any change renders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from launcher.models import Run

# Every Run field the status region (templates/launcher/run_detail.html#run-status) shows.
RUN_STATUS_FIELDS = (
    "status",
    "submission",
    "submission_error",
    "attempt",
    "cyberdesk_id",
    "started_at",
    "ended_at",
    "cost_usd",
    "errors",
    "post_run_checks",
    "output_data",
    "usage_metadata",
    "message_history",
    "attachments",
)
# Every Run field (and related name, `selectors.RUN_LIST_NAMES`) a runs-list row shows.
RUN_ROW_FIELDS = (
    "pk",
    "status",
    "batch_id",
    "started_at",
    "ended_at",
    "cost_usd",
    "prompt_label",
    "workflow_id",
    "workflow_name",
    "model_option_id",
    "model_option_name",
    "prompt_version_id",
    "prompt_version_number",
    "launched_by_username",
)


def fingerprint(value: Any) -> str:
    """16 hex digits of a BLAKE2b over a canonical JSON form of `value`."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def run_status_fingerprint(run: Run, *extra: Any) -> str:
    """What the status region of `run` shows, plus `extra` (e.g. a notice it carries)."""
    return fingerprint([[getattr(run, name) for name in RUN_STATUS_FIELDS], list(extra)])


def run_rows_fingerprint(runs: Iterable[Run], *extra: Any) -> str:
    """What the runs table shows for `runs` (read with `selectors.runs_for_list`: its columns
    and the related names it joins in)."""
    rows = [[getattr(run, name) for name in RUN_ROW_FIELDS] for run in runs]
    return fingerprint([rows, list(extra)])
