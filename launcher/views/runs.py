"""Run pages: one run's page, its polled status fragment, and its actions (cancel, retry,
attachment downloads).

The page renders from the database in one go and never calls the API: an unfinished run's
status region asks for its fragment as soon as the page has loaded (and every 2 s), and that
poll does the refresh (at most one API call per run per interval, one quick attempt, none while
an outage is noted: `services/api_status.py`). A finished run's attachments and cost are stored
by the worker when it finishes; attachments not stored yet load after the page as a fragment.
A poll that finds nothing new answers 204 without rendering (`launcher/fingerprints.py`).

Permission: viewing a run needs `launcher.launch_run`, like launching one — the people who run
workflows are the people who read their results (run outputs can hold customer data, so a
logged-in user without that permission sees nothing). Every page, fragment and POST checks it
(htmx can ask for any fragment directly).
"""

import json
import uuid

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from launcher.cyberdesk import errors
from launcher.fingerprints import run_status_fingerprint
from launcher.models import PromptVersion, Run
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.selectors import prompt_diff
from launcher.services.api_status import api_outage
from launcher.services.run_sync import run_refresh
from launcher.services.runs import (
    RunActionFailed,
    run_attachment_download_url,
    run_attachments,
    run_cancel,
    run_retry,
)

PAGE = "launcher/run_detail.html"
STATUS_FRAGMENT = f"{PAGE}#run-status"
ATTACHMENTS_FRAGMENT = f"{PAGE}#run-attachments"
VERSION_HEADER = "X-Poll-Version"  # the fingerprint a poll sends back (hx-headers)
_RELATIONS = ("workflow", "model_option", "prompt_version", "launched_by")


def _run_or_404(run_id: int, *, related: bool) -> Run:
    runs = Run.objects.select_related(*_RELATIONS) if related else Run.objects.all()
    return get_object_or_404(runs, pk=run_id)


def _refresh(run: Run) -> Run:
    """`run_refresh` (at most one API call per run per interval, across all viewers), keeping
    the related rows already loaded: they never change, and reloading the row drops them."""
    loaded = {
        name: getattr(run, name) for name in _RELATIONS if Run._meta.get_field(name).is_cached(run)
    }
    run_refresh(run, viewer=True)
    for name, value in loaded.items():
        setattr(run, name, value)
    return run


def _status_context(run: Run, *, fetch_attachments: bool = True, **extra) -> dict:
    attachments, attachments_error = run_attachments(run, fetch=fetch_attachments)
    # Said on the page while the API is down and the page would need it (an unfinished run's
    # status, attachments not stored yet); a cache read, no API call.
    needs_api = not run.is_finished or (run.cyberdesk_id and run.attachments is None)
    outage = api_outage() if needs_api else None
    return {
        "run": run,
        "outage": outage,
        "attachments_pending": bool(
            run.is_finished and run.cyberdesk_id and run.attachments is None
        ),
        "status_version": run_status_fingerprint(run, outage, attachments_error),
        "output_json": _pretty(run.output_data),
        "usage_json": _pretty(run.usage_metadata),
        "history_json": _pretty(run.message_history),
        "history_count": len(run.message_history) if isinstance(run.message_history, list) else 0,
        "attachments": attachments,
        "attachments_error": attachments_error,
        **extra,
    }


def _pretty(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@require_GET
@permission_required(LAUNCH_RUN)
def run_detail(request, run_id: int):
    run = _run_or_404(run_id, related=True)
    latest = None
    diff = None
    if run.prompt_version_id is not None:
        latest = (
            PromptVersion.objects.filter(workflow_id=run.workflow_id).order_by("-number").first()
        )
        if latest is not None and latest.pk != run.prompt_version_id:
            diff = prompt_diff(run.prompt_version.text, latest.text)
    context = _status_context(
        run,
        fetch_attachments=False,
        nav="runs",
        latest_version=latest,
        prompt_diff=diff,
        inputs_json={key: _pretty(value) for key, value in (run.input_values or {}).items()},
    )
    return render(request, PAGE, context)


@require_GET
@permission_required(LAUNCH_RUN)
def run_status(request, run_id: int):
    """The status region, polled every 2 s while the run is unfinished. One read of the run
    while it was refreshed within the interval (no claim is tried); once due, the one poller
    per interval whose compare-and-set wins the refresh calls the API."""
    run = _refresh(_run_or_404(run_id, related=False))
    context = _status_context(run, fetch_attachments=False)
    if request.headers.get(VERSION_HEADER) == context["status_version"]:
        return HttpResponse(status=204)  # nothing new since the page's render: htmx keeps it
    return render(request, STATUS_FRAGMENT, context)


@require_GET
@permission_required(LAUNCH_RUN)
def run_attachments_panel(request, run_id: int):
    """A finished run's attachments, loaded after its page when they were not stored yet (one
    quick API attempt; stored, so the next view reads the database). Without JavaScript the
    page's link comes here and goes back to the page."""
    run = _run_or_404(run_id, related=False)
    attachments, error = run_attachments(run)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("run_detail", run_id=run.pk)
    context = {"run": run, "attachments": attachments, "attachments_error": error}
    context["attachments_pending"] = False
    return render(request, ATTACHMENTS_FRAGMENT, context)


def _after_action(request, run: Run, error: str = ""):
    if request.htmx:
        return render(request, STATUS_FRAGMENT, _status_context(run, action_error=error))
    if error:
        messages.error(request, error)
    return redirect("run_detail", run_id=run.pk)


@require_POST
@permission_required(LAUNCH_RUN)
def run_cancel_view(request, run_id: int):
    run = _run_or_404(run_id, related=False)
    try:
        run = run_cancel(run=run, user=request.user)
    except RunActionFailed as exc:
        return _after_action(request, run, str(exc))
    if not request.htmx:
        messages.success(request, "Cancel requested.")
    return _after_action(request, run)


@require_POST
@permission_required(LAUNCH_RUN)
def run_retry_view(request, run_id: int):
    run = _run_or_404(run_id, related=False)
    try:
        run = run_retry(run=run, user=request.user)
    except RunActionFailed as exc:
        return _after_action(request, run, str(exc))
    if not request.htmx:
        messages.success(request, f"Retry started (attempt {run.attempt}).")
    return _after_action(request, run)


@require_GET
@permission_required(LAUNCH_RUN)
def run_attachment_download(request, run_id: int, attachment_id: uuid.UUID):
    """Redirect to a short-lived signed download URL (asked for only when clicked)."""
    run = _run_or_404(run_id, related=False)
    try:
        url = run_attachment_download_url(run=run, attachment_id=attachment_id)
    except (RunActionFailed, errors.CyberdeskError) as exc:
        messages.error(request, f"The download is not available: {exc}")
        return redirect("run_detail", run_id=run.pk)
    if url is None:
        raise Http404("No such attachment on this run.")
    return redirect(url)
