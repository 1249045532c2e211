"""Batch pages: the list (`/batches/`), the new batch form with its preview (`/batches/new`),
one batch's page with live progress and the comparison grid (`/batches/<id>/`), its actions
(cancel the rest, retry the failed) and its CSV export.

The new batch form is one URL that works without JavaScript:

- `GET /batches/new?workflow=<id>` shows the form for a workflow;
- `POST` with `preview` checks every row and shows the number of runs and each bad row with
  its line number (nothing is stored or sent);
- `POST` with `launch` plans the batch and redirects to its page — skipping the bad rows only
  when this exact form was previewed; otherwise it is previewed first.

Permission: `launcher.launch_run` for all of it (403 otherwise), like the runs themselves.
"""

from __future__ import annotations

import csv
import io
import json

from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize, slugify
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from launcher.batch_forms import BatchForm, batch_columns, batch_form_kept
from launcher.batch_grid import batch_grid
from launcher.batch_rows import batch_rows_page
from launcher.models import Batch, Workflow
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.selectors import (
    BatchLifecycle,
    batch_export_rows,
    batch_progress,
    batch_progress_lifecycle,
    batch_unfinished_sent_runs,
    batches_for_list,
)
from launcher.services.batches import (
    BatchRefused,
    batch_cancel_rest,
    batch_cluster_retry,
    batch_create,
    batch_failure_cluster,
    batch_failure_clusters,
    batch_retry_failed,
    max_runs,
)
from launcher.services.run_sync import runs_refresh_many
from launcher.services.runs import launch_catalog_refresh
from launcher.services.workflows import workflow_choose
from launcher.views.confirm import Confirmation, confirm_render

DETAIL = "launcher/batch_detail.html"
PROGRESS_FRAGMENT = f"{DETAIL}#batch-progress"
DECIDE_FRAGMENT = "launcher/batch_decide.html#batch-decide"
CLUSTER_RETRY = "launcher/batch_cluster_retry.html"
ROWS_VIEW = "rows"
NEW = "launcher/batch_new.html"
LIST_LIMIT = 100


@require_GET
@permission_required(LAUNCH_RUN)
def batch_list(request):
    batches = batches_for_list(limit=LIST_LIMIT)
    return render(request, "launcher/batch_list.html", {"nav": "batches", "batches": batches})


# Pasted rows may carry values that must not be kept: keep every field out of error reports.
@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
@permission_required(LAUNCH_RUN)
def batch_new(request):
    api_error = launch_catalog_refresh()
    workflows = list(Workflow.objects.all())
    params = request.POST if request.method == "POST" else request.GET
    workflow, workflow_error = workflow_choose(params.get("workflow"), workflows)
    context = {
        "nav": "batches",
        "workflows": workflows,
        "workflow": workflow,
        "api_error": api_error or workflow_error,
        "max_runs": max_runs(),
    }
    if workflow is None:
        return render(request, NEW, context)
    if request.method == "GET" or "choose" in request.POST:
        # A workflow chosen (htmx on change, or the "Choose workflow" button): the form for it,
        # keeping the rows and settings typed so far; nothing is checked yet.
        kept = batch_form_kept(request.POST) if request.method == "POST" else {}
        context["form"] = BatchForm(workflow=workflow, initial=kept)
        if request.htmx and request.method == "POST":
            return render(request, f"{NEW}#batch-details", context)
        return render(request, NEW, context)

    form = BatchForm(request.POST, request.FILES, workflow=workflow)
    context["form"] = form
    if form.is_valid() and "launch" in request.POST:
        if not form.check.bad_rows or form.previewed_this:
            try:
                batch = batch_create(
                    user=request.user,
                    workflow=workflow,
                    models=form.chosen_models,
                    prompts=form.chosen_prompts,
                    rows=form.check.rows,
                    token=form.cleaned_data["token"],
                    name=form.cleaned_data["name"],
                )
            except BatchRefused as exc:
                form.add_error(None, str(exc))
            else:
                count = batch.runs.count()
                way = "its way" if count == 1 else "their way"
                messages.success(request, f"Batch planned: {count} run{pluralize(count)} on {way}.")
                return redirect("batch_detail", batch_id=batch.pk)
        else:
            context["preview_first"] = True
    context["preview"] = form.is_valid() or bool(form.check.bad_rows)
    form.show_again()
    return render(request, NEW, context)


@require_GET
@permission_required(LAUNCH_RUN)
def batch_template(request, fmt: str):
    """An empty rows file for the chosen workflow: the CSV header (every column a batch row may
    fill), or one JSON Lines object with every key (its default, else null)."""
    workflow, _ = workflow_choose(request.GET.get("workflow"), list(Workflow.objects.all()))
    if workflow is None or fmt not in ("csv", "jsonl"):
        raise Http404("No such workflow.")
    columns = batch_columns(workflow)
    slug = slugify(workflow.name) or "workflow"
    if fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([spec.key for spec in columns])
        content, content_type = buffer.getvalue(), "text/csv; charset=utf-8"
    else:
        example = {spec.key: spec.default if spec.has_default else None for spec in columns}
        content = json.dumps(example, ensure_ascii=False) + "\n"
        content_type = "application/x-ndjson; charset=utf-8"
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{slug}-rows.{fmt}"'
    return response


def _batch_or_404(batch_id: int) -> Batch:
    return get_object_or_404(Batch.objects.select_related("workflow", "created_by"), pk=batch_id)


def _progress_context(batch: Batch, *, refresh: bool = True) -> dict:
    if refresh:
        unfinished = batch_unfinished_sent_runs(batch)
        if unfinished:
            # At most one list call per workflow per interval, however many people watch.
            runs_refresh_many(unfinished, viewer=True)
    progress = batch_progress(batch)
    # The worker cancelling or retrying runs changes the counts even when every run had
    # finished: keep polling until it is done.
    working = bool(batch.cancel_requested_at or batch.retry_requested_at)
    lifecycle = batch_progress_lifecycle(batch, progress)
    return {
        "batch": batch,
        "progress": progress,
        "lifecycle": lifecycle,
        "lifecycle_label": BatchLifecycle.LABELS[lifecycle],
        "polling": working or not progress.is_finished,
    }


def _decide_context(request, batch: Batch, *, polling: bool) -> dict:
    """The "which is better" region: the grid against a baseline with the failure clusters,
    or (`?view=rows`) the runs by input row, a page at a time."""
    view = ROWS_VIEW if request.GET.get("view") == ROWS_VIEW else ""
    grid = batch_grid(batch=batch, baseline=request.GET.get("baseline") or None)
    context = {
        "batch": batch,
        "grid": grid,
        "view": view,
        "baseline_key": grid.baseline.key if grid.baseline else "",
        "decide_polling": polling,
    }
    if view == ROWS_VIEW:
        differing = request.GET.get("differ") == "1"
        context["rows_page"] = batch_rows_page(
            batch=batch,
            columns=grid.cells,
            page=_page_number(request.GET.get("page")),
            differing_only=differing,
        )
        # The rows view's own links (pages, the filter) keep the baseline and the filter.
        rows_query = {"view": ROWS_VIEW, "baseline": context["baseline_key"]}
        context["rows_query"] = urlencode({**rows_query, **({"differ": 1} if differing else {})})
        context["rows_query_toggled"] = urlencode(
            {**rows_query, **({} if differing else {"differ": 1})}
        )
    else:
        context["clusters"] = batch_failure_clusters(batch=batch)
    return context


def _page_number(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 100_000))
    except ValueError:
        return 1


@require_GET
@permission_required(LAUNCH_RUN)
def batch_detail(request, batch_id: int):
    batch = _batch_or_404(batch_id)
    # A history restore (back button, htmx cache miss) wants the whole page.
    fragment = request.htmx and not request.htmx.history_restore_request
    if fragment and request.htmx.target == "batch-decide":
        # The grid / by-row region's own poll, or a baseline picked: no upstream refresh here
        # (the progress region's poll does it), so this costs database reads only.
        working = bool(batch.cancel_requested_at or batch.retry_requested_at)
        polling = working or not batch_progress(batch).is_finished
        return render(request, DECIDE_FRAGMENT, _decide_context(request, batch, polling=polling))
    context = _progress_context(batch)
    if fragment:
        response = render(request, PROGRESS_FRAGMENT, context)
        if not context["polling"]:
            # The last poll: the grid region refreshes at once instead of at its next tick.
            trigger_client_event(response, "batch-finished")
        return response
    context.update(_decide_context(request, batch, polling=context["polling"]))
    context["nav"] = "batches"
    return render(request, DETAIL, context)


def _after_action(request, batch: Batch, notice: str, *, level: int = messages.SUCCESS):
    """htmx: the progress region (no API call in this request; its next poll refreshes);
    otherwise back to the batch page with the notice as a message."""
    if request.htmx:
        context = _progress_context(batch, refresh=False)
        context["notice"] = notice
        return render(request, PROGRESS_FRAGMENT, context)
    messages.add_message(request, level, notice)
    return redirect("batch_detail", batch_id=batch.pk)


def _runs(count: int) -> str:
    return f"{count} run{pluralize(count)}"


_FOCUS_AFTER = "#batch-progress .actions button, #progress-heading"


@require_GET
@permission_required(LAUNCH_RUN)
def batch_cancel_confirm(request, batch_id: int):
    batch = _batch_or_404(batch_id)
    progress = batch_progress(batch)
    waiting = progress.queued
    active = progress.total - progress.finished - waiting
    consequences = []
    if waiting:
        consequences.append(f"{_runs(waiting)} not sent yet will never be sent.")
    if active:
        consequences.append(f"Cyberdesk stops {_runs(active)} still active; they do not finish.")
    if progress.finished:
        consequences.append(f"{_runs(progress.finished)} already finished keep their results.")
    if not waiting and not active:
        consequences.append("No run is waiting or active: nothing would change.")
    return confirm_render(
        request,
        Confirmation(
            title=f"Cancel the rest of {batch}?",
            consequences=consequences,
            action_url=reverse("batch_cancel", args=[batch.pk]),
            confirm_label=f"Yes, cancel {_runs(waiting + active)}",
            back_url=reverse("batch_detail", args=[batch.pk]),
            back_label="Keep the batch going",
            hx_target="#batch-progress",
            focus_after=_FOCUS_AFTER,
        ),
        batch=batch,
    )


@require_GET
@permission_required(LAUNCH_RUN)
def batch_retry_confirm(request, batch_id: int):
    batch = _batch_or_404(batch_id)
    failed = batch_progress(batch).failed
    return confirm_render(
        request,
        Confirmation(
            title=f"Retry {_runs(failed)} that failed in {batch}?",
            consequences=[
                f"Each of the {_runs(failed)} that failed or errored starts its next attempt, "
                "with the same inputs, model and prompt.",
                "The failed attempts' results stay on each run's page.",
            ],
            action_url=reverse("batch_retry_failed", args=[batch.pk]),
            confirm_label=f"Yes, retry {_runs(failed)}",
            back_url=reverse("batch_detail", args=[batch.pk]),
            back_label="Don't retry",
            hx_target="#batch-progress",
            focus_after=_FOCUS_AFTER,
            danger=False,
        ),
        batch=batch,
    )


@require_POST
@permission_required(LAUNCH_RUN)
def batch_cancel(request, batch_id: int):
    """Cancel what has not run yet; the worker cancels the active runs upstream."""
    batch = _batch_or_404(batch_id)
    asked = batch_cancel_rest(batch=batch, user=request.user)
    said = ["Batch cancelled."]
    if asked.done_now:
        said.append(f"{_runs(asked.done_now)} not sent yet will never be sent.")
    if asked.in_background:
        said.append(f"Cancelling {_runs(asked.in_background)} still active in the background…")
    if not asked.done_now and not asked.in_background:
        said.append("No run was waiting or active.")
    return _after_action(request, batch, " ".join(said))


@require_POST
@permission_required(LAUNCH_RUN)
def batch_retry(request, batch_id: int):
    """Record the retry; the worker retries each failed run once."""
    batch = _batch_or_404(batch_id)
    asked = batch_retry_failed(batch=batch, user=request.user)
    if not asked.in_background:
        return _after_action(request, batch, "No failed runs to retry.", level=messages.INFO)
    notice = f"Retrying {_runs(asked.in_background)} that failed, in the background…"
    return _after_action(request, batch, notice)


@require_http_methods(["GET", "POST"])
@permission_required(LAUNCH_RUN)
def batch_cluster_retry_view(request, batch_id: int):
    """GET: the confirmation ("Retry the 12 runs that failed with …?"); POST: retry them in
    the background and go back to the batch page. A plain link and form: no JavaScript needed."""
    batch = _batch_or_404(batch_id)
    key = (request.POST if request.method == "POST" else request.GET).get("cluster", "")
    cluster = batch_failure_cluster(batch=batch, key=key) if key else None
    if cluster is None:
        messages.info(request, "No failed run is left in that cluster.")
        return redirect("batch_detail", batch_id=batch.pk)
    if request.method == "GET":
        context = {"nav": "batches", "batch": batch, "cluster": cluster}
        return render(request, CLUSTER_RETRY, context)
    asked = batch_cluster_retry(batch=batch, key=key, user=request.user)
    if asked.in_background:
        notice = f"Retrying {_runs(asked.in_background)} of this cluster, in the background…"
        messages.success(request, notice)
    else:
        messages.info(request, "None of this cluster's runs can be retried.")
    return redirect("batch_detail", batch_id=batch.pk)


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


# Spreadsheet programs run a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value):
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@require_GET
@permission_required(LAUNCH_RUN)
def batch_export(request, batch_id: int):
    """Every run of the batch as CSV: inputs (secrets are never stored), outputs, outcome."""
    batch = _batch_or_404(batch_id)
    writer = csv.writer(_Echo())
    rows = (
        writer.writerow([_safe_cell(value) for value in row]) for row in batch_export_rows(batch)
    )
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.csv"'
    return response
