"""Run pages: one run's page, its polled status fragment, and its actions (cancel, retry,
attachment downloads).

Permission: viewing a run needs `launcher.launch_run`, like launching one — the people who run
workflows are the people who read their results (run outputs can hold customer data, so a
logged-in user without that permission sees nothing). Every page, fragment and POST checks it
(htmx can ask for any fragment directly).
"""

import json
import uuid

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from launcher.cyberdesk import errors
from launcher.models import PromptVersion, Run, RunStatus
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.selectors import prompt_diff
from launcher.services.run_sync import run_refresh
from launcher.services.runs import (
    RunActionFailed,
    UnsafeDownloadUrl,
    run_attachment_download_url,
    run_attachments,
    run_cancel,
    run_retry,
)

PAGE = "launcher/run_detail.html"
STATUS_FRAGMENT = f"{PAGE}#run-status"
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
    run_refresh(run)
    for name, value in loaded.items():
        setattr(run, name, value)
    return run


def _status_context(run: Run, **extra) -> dict:
    attachments, attachments_error = run_attachments(run)
    return {
        "run": run,
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
    run = _refresh(_run_or_404(run_id, related=True))
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
    return render(request, STATUS_FRAGMENT, _status_context(run))


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
    if run.is_finished and run.status != RunStatus.CANCELLED:
        # It finished upstream before the cancel reached it: nothing was cancelled.
        return _after_action(
            request,
            run,
            f"The run had already finished ({run.get_status_display()}); nothing was cancelled.",
        )
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
    except UnsafeDownloadUrl as exc:
        return render(request, "launcher/bad_request.html", {"message": str(exc)}, status=400)
    if url is None:
        raise Http404("No such attachment on this run.")
    return HttpResponseRedirect(url)
