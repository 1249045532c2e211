"""Run pages: one run's page, its polled status fragment, its actions (cancel, retry,
attachment downloads), the page of one attempt and the images of an attempt's timeline.

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

import uuid

from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from launcher.cyberdesk import errors
from launcher.evidence.attempts import (
    attempt_evidence,
    run_attempt_get,
    run_attempt_summaries,
    run_history,
    run_inputs_readable,
)
from launcher.evidence.compare import compare_counterpart
from launcher.evidence.timeline import timeline_image
from launcher.fingerprints import run_status_fingerprint
from launcher.models import TERMINAL_STATUSES, PromptVersion, Run, RunStatus, sha256_text
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.selectors import prompt_diff
from launcher.services.api_status import api_outage
from launcher.services.run_sync import run_refresh
from launcher.services.runs import (
    RunActionFailed,
    UnsafeDownloadUrl,
    run_attachment_download_url,
    run_attachments,
    run_cancel,
    run_retry,
)
from launcher.views.confirm import Confirmation, confirm_render
from launcher.views.run_list import _run_ids as bulk_run_ids
from launcher.views.run_list import run_bulk_action

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


def _status_outage(run: Run):
    """The outage said on the page while the API is down and the page would need it (an
    unfinished run's status, attachments not stored yet); a cache read, no API call."""
    needs_api = not run.is_finished or (run.cyberdesk_id and run.attachments is None)
    return api_outage() if needs_api else None


def _status_version(run: Run) -> str:
    """The fingerprint `_status_context(run, fetch_attachments=False)` carries, alone: a poll
    that finds nothing new builds no context (no evidence timeline, no Attempts or History)."""
    _, attachments_error = run_attachments(run, fetch=False)
    return run_status_fingerprint(run, _status_outage(run), attachments_error)


def _status_context(run: Run, *, fetch_attachments: bool = True, **extra) -> dict:
    attachments, attachments_error = run_attachments(run, fetch=fetch_attachments)
    outage = _status_outage(run)
    return {
        "run": run,
        "outage": outage,
        "attachments_pending": bool(
            run.is_finished and run.cyberdesk_id and run.attachments is None
        ),
        "status_version": run_status_fingerprint(run, outage, attachments_error),
        "evidence": attempt_evidence(run, number=run.attempt),
        "attachments": attachments,
        "attachments_error": attachments_error,
        "attachments_downloadable": True,
        **extra,
    }


def _compare_url(run: Run) -> str:
    """The Compare link: this run against its most useful counterpart, or the empty form."""
    counterpart = compare_counterpart(run)
    base = reverse("run_compare")
    if counterpart is None:
        return f"{base}?b={run.pk}"
    return f"{base}?a={counterpart.value}&b={run.pk}"


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
        stored_prompt_changed=_stored_prompt_changed(run),
        input_rows=run_inputs_readable(run),
        attempts=run_attempt_summaries(run),
        history=run_history(run),
        compare_url=_compare_url(run),
    )
    return render(request, PAGE, context)


def _stored_prompt_changed(run: Run) -> bool:
    """A run launched with the workflow's stored prompt whose text has changed since."""
    if run.prompt_mode != "stored" or run.prompt_version is None:
        return False
    return sha256_text(run.workflow.main_prompt or "") != run.prompt_version.sha256


@require_GET
@permission_required(LAUNCH_RUN)
def run_status(request, run_id: int):
    """The status region, polled every 2 s while the run is unfinished. One read of the run
    while it was refreshed within the interval (no claim is tried); once due, the one poller
    per interval whose compare-and-set wins the refresh calls the API."""
    run = _refresh(_run_or_404(run_id, related=False))
    if request.headers.get(VERSION_HEADER) == _status_version(run):
        return HttpResponse(status=204)  # nothing new since the page's render: htmx keeps it
    context = _status_context(run, fetch_attachments=False, **_finished_extras(run))
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
    context["attachments_downloadable"] = True
    return render(request, ATTACHMENTS_FRAGMENT, context)


def _finished_extras(run: Run) -> dict:
    """For the fragment of a finished run — the region's last render — the Attempts and History
    sections as out-of-band swaps (two queries, once; polls of an unfinished run read neither)."""
    if not run.is_finished:
        return {}
    return {"oob": True, "attempts": run_attempt_summaries(run), "history": run_history(run)}


def _after_action(request, run: Run, error: str = ""):
    if request.htmx:
        context = _status_context(run, action_error=error, **_finished_extras(run))
        return render(request, STATUS_FRAGMENT, context)
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
    messages.success(
        request,
        f"Retry started: attempt {run.attempt}. Attempt {run.attempt - 1}'s results stay here.",
    )
    if request.htmx:
        # The whole page changes (a new attempt in Attempts, two History entries), not only the
        # status region: htmx loads the page again.
        return HttpResponseClientRedirect(reverse("run_detail", args=[run.pk]))
    return redirect("run_detail", run_id=run.pk)


# After the action's answer is swapped in: the action's own next step (Retry after Cancel, and
# Cancel after Retry) when there is one, else the status heading. Focus never falls to <body>.
_FOCUS_AFTER = "#run-status .actions button, #run-status-heading"


@require_GET
@permission_required(LAUNCH_RUN)
def run_cancel_confirm(request, run_id: int):
    run = _run_or_404(run_id, related=False)
    consequences = [
        f"Cyberdesk stops run {run.pk} (attempt {run.attempt}) where it is; it does not finish.",
        "What it did so far stays on this page; you can retry it afterwards.",
    ]
    if run.is_finished:
        consequences = [f"Run {run.pk} has already finished: cancelling changes nothing."]
    return confirm_render(
        request,
        Confirmation(
            title=f"Cancel run {run.pk}?",
            consequences=consequences,
            action_url=reverse("run_cancel", args=[run.pk]),
            confirm_label=f"Yes, cancel run {run.pk}",
            back_url=reverse("run_detail", args=[run.pk]),
            back_label="Keep it running",
            hx_target="#run-status",
            focus_after=_FOCUS_AFTER,
        ),
        run=run,
    )


@require_GET
@permission_required(LAUNCH_RUN)
def run_retry_confirm(request, run_id: int):
    run = _run_or_404(run_id, related=False)
    return confirm_render(
        request,
        Confirmation(
            title=f"Retry run {run.pk}?",
            consequences=[
                f"Retry starts attempt {run.attempt + 1} of this run; attempt {run.attempt}'s "
                "results stay here.",
                "It runs with the same inputs, model and prompt.",
            ],
            action_url=reverse("run_retry", args=[run.pk]),
            confirm_label=f"Yes, start attempt {run.attempt + 1}",
            back_url=reverse("run_detail", args=[run.pk]),
            back_label="Don't retry",
            hx_target="#run-status",
            focus_after=_FOCUS_AFTER,
            danger=False,
        ),
        run=run,
    )


@require_POST
@permission_required(LAUNCH_RUN)
def run_bulk_confirm(request):
    """The runs list's "Cancel selected" / "Retry selected", confirmed first: how many of the
    ticked runs the action applies to (the others are left alone by it anyway)."""
    action = request.POST.get("action", "")
    ids = bulk_run_ids(request.POST.getlist("run"))
    query = request.POST.get("query", "")
    back_url = reverse("run_list") + (f"?{query}" if query else "")
    if action not in ("cancel", "retry") or not ids:
        # Nothing to confirm: the action itself says what is missing.
        return run_bulk_action(request)
    ticked = len(ids)
    active = Run.objects.filter(pk__in=ids).exclude(status__in=TERMINAL_STATUSES).count()
    finished = ticked - active
    if action == "cancel":
        title = f"Cancel {_runs(active)}?"
        consequences = [
            f"Cyberdesk stops {_runs(active)} of the {ticked} ticked; they do not finish.",
        ]
        if finished:
            consequences.append(f"{_runs(finished)} already finished: left as they are.")
        label, back_label = f"Yes, cancel {_runs(active)}", "Keep them running"
    else:
        title = f"Retry {_runs(finished)}?"
        consequences = [
            f"Each of the {_runs(finished)} that finished starts its next attempt; the earlier "
            "attempts' results stay on their run pages."
        ]
        if active:
            consequences.append(f"{_runs(active)} still active: not retried.")
        label, back_label = f"Yes, retry {_runs(finished)}", "Don't retry"
    hidden = [("action", action), ("query", query), *[("run", str(pk)) for pk in ids]]
    return confirm_render(
        request,
        Confirmation(
            title=title,
            consequences=consequences,
            action_url=reverse("run_bulk_action"),
            confirm_label=label,
            back_url=back_url,
            back_label=back_label,
            danger=action == "cancel",
            hidden=hidden,
        ),
    )


def _runs(count: int) -> str:
    return f"{count} run{pluralize(count)}"


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


ATTEMPT_PAGE = "launcher/run_attempt.html"


@require_GET
@permission_required(LAUNCH_RUN)
def run_attempt_detail(request, run_id: int, number: int):
    """One attempt of a run, earlier or current, with the same detail as the run page."""
    run = _run_or_404(run_id, related=True)
    source = run_attempt_get(run, number)
    if source is None:
        raise Http404("This run has no such attempt.")
    is_current = source is run
    attachments, attachments_error = (
        run_attachments(run) if is_current else (source.attachments or [], "")
    )
    base = reverse("run_compare")
    other = f"{run.pk}.{number - 1}" if number > 1 else (str(run.pk) if not is_current else None)
    context = {
        "nav": "runs",
        "run": run,
        "attempt_number": number,
        "attempt_source": source,
        "is_current": is_current,
        "evidence": attempt_evidence(source, number=number),
        "attachments": attachments,
        "attachments_error": attachments_error,
        "attachments_downloadable": is_current,
        "attachments_unknown": not is_current and source.attachments is None,
        "attempts": run_attempt_summaries(run),
        "input_rows": run_inputs_readable(run),  # a retry re-runs the same inputs
        "compare_url": f"{base}?a={other}&b={run.pk}.{number}" if other else f"{base}?b={run.pk}",
    }
    return render(request, ATTEMPT_PAGE, context)


@require_GET
@permission_required(LAUNCH_RUN)
def run_attempt_image(request, run_id: int, number: int, path: str):
    """An image of an attempt's timeline (a screenshot), served from the stored history.
    `path` is checked by `timeline_image` (anything but "<n>.<n>[.<n>]" finds nothing)."""
    run = _run_or_404(run_id, related=False)
    source = run_attempt_get(run, number)
    found = timeline_image(source.message_history, path) if source is not None else None
    if found is None:
        raise Http404("No such image.")
    media_type, content = found
    response = HttpResponse(content, content_type=media_type)
    # A finished attempt's images never change. An unfinished one's history only grows (a step
    # already written keeps its place), and its region is re-rendered by every poll: a short
    # cache keeps each poll from fetching every screenshot again.
    max_age = 86400 if source.is_finished else 300
    response["Cache-Control"] = f"private, max-age={max_age}"
    return response
