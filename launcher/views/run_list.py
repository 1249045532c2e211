"""The runs page (`/runs/`): every run, newest first, 50 a page, filtered by what the URL says;
and bulk actions (cancel, retry) on the rows a user ticks.

Live without a poll per row: while any run on the page is unfinished, the table region is
re-fetched every 3 s (one request for the whole page; the browser skips it while the tab is
hidden, see app.js). Each fetch refreshes the page's unfinished runs from the API with
`runs_refresh_many` — one list call per workflow with a `fields` projection — and its
compare-and-set claim means at most one such call per interval however many people watch.

Permission: `launcher.launch_run`, as for a run's own page (run outputs can hold customer data).
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from launcher.models import Run
from launcher.parsing import id_parse
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.run_filters import RunFilterForm
from launcher.selectors import (
    RUN_LIST_PAGE_SIZE,
    duration_display,
    run_filter_choices,
    runs_for_list,
)
from launcher.services.run_sync import runs_refresh_many
from launcher.services.runs import RunActionFailed, run_cancel, run_retry

PAGE = "launcher/run_list.html"
TABLE_FRAGMENT = f"{PAGE}#run-table"
BULK_LIMIT = RUN_LIST_PAGE_SIZE
BULK_ACTIONS = {"cancel": (run_cancel, "Cancel requested"), "retry": (run_retry, "Retry started")}


@require_GET
@permission_required(LAUNCH_RUN)
def run_list(request):
    form = RunFilterForm(request.GET)
    runs = runs_for_list(form.filters())
    page = Paginator(runs, RUN_LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    unfinished = [run for run in rows if not run.is_finished]
    if unfinished and runs_refresh_many(unfinished):
        # Some changed: read the page again (the refresh updated its own copies of the rows).
        rows = list(runs.filter(pk__in=[run.pk for run in rows]))
    for run in rows:
        run.duration_text = duration_display(run.duration)
    context = {
        "page": page,
        "runs": rows,
        "polling": any(not run.is_finished for run in rows),
        "query": _query_without_page(request.GET),
    }
    if request.htmx:
        return render(request, TABLE_FRAGMENT, context)
    context.update(nav="runs", form=form, choices=run_filter_choices())
    return render(request, PAGE, context)


def _run_ids(values: list[str]) -> list[int]:
    """The ticked run ids that can be ids at all (`id_parse`); anything else is not a run of
    ours, so it is left out."""
    ids = [id_parse(value) for value in values]
    return [pk for pk in ids if pk is not None][:BULK_LIMIT]


def _query_without_page(params: QueryDict) -> str:
    query = params.copy()
    query.pop("page", None)
    return query.urlencode()


@require_POST
@permission_required(LAUNCH_RUN)
def run_bulk_action(request):
    """Cancel or retry the ticked runs; report each outcome; back to the same filtered page.
    "Compare selected" with exactly two runs ticked opens the compare page (older first)."""
    ids = _run_ids(request.POST.getlist("run"))
    if request.POST.get("action") == "compare":
        if len(set(ids)) == 2:
            older, newer = sorted(set(ids))
            return redirect(f"{reverse('run_compare')}?a={older}&b={newer}")
        messages.error(request, "Tick exactly two runs to compare them.")
        query = QueryDict(request.POST.get("query", ""), mutable=False).urlencode()
        return redirect(reverse("run_list") + (f"?{query}" if query else ""))
    action = BULK_ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        messages.error(request, "Choose Cancel selected, Retry selected or Compare selected.")
    elif not ids:
        messages.error(request, "Tick at least one run first.")
    else:
        act, done_message = action
        done = []
        for run in Run.objects.filter(pk__in=ids).order_by("-created_at", "-id"):
            try:
                act(run=run, user=request.user)
            except RunActionFailed as exc:
                messages.error(request, f"Run {run.pk}: {exc}")
            else:
                done.append(run.pk)
        if done:
            runs_text = ", ".join(str(pk) for pk in done)
            messages.success(request, f"{done_message} for {len(done)} run(s): {runs_text}.")
    # Back to the page the user was on; only its query string is taken from the form.
    query = QueryDict(request.POST.get("query", ""), mutable=False).urlencode()
    return redirect(reverse("run_list") + (f"?{query}" if query else ""))
