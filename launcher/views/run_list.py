"""The runs page (`/runs/`): every run, newest first, 50 a page, filtered by what the URL says;
and bulk actions (cancel, retry) on the rows a user ticks.

Flat with history: pages are keyset-paginated ("Newer" / "Older" links carry the (created_at,
id) of the edge row), never counted, and each filter has an index ending in that order, so a
page reads 51 index entries at 500 runs or at a million (see `selectors.runs_page`).

Live without a poll per row: while any run on the page is unfinished, the table region is
re-fetched every 3 s (one request for the whole page; the browser skips it while the tab is
hidden, see app.js). Each fetch refreshes the page's unfinished runs from the API with
`runs_refresh_many` — one list call per workflow with a `fields` projection — and its
compare-and-set claim means at most one such call per interval however many people watch.
Each poll sends the fingerprint of what the region shows (`X-Poll-Version`); a poll that finds
the same answers 204 without rendering (htmx swaps nothing). While the API is unreachable the poll
skips the refresh and says so.

Permission: `launcher.launch_run`, as for a run's own page (run outputs can hold customer data).
"""

from __future__ import annotations

import functools

from django.contrib import messages
from django.core.cache import cache
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from launcher.cache_versions import RUN_FILTER_CHOICES, cache_version
from launcher.fingerprints import fingerprint, run_rows_fingerprint
from launcher.models import Run
from launcher.parsing import id_parse
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.run_filters import RunFilterForm, run_list_cursors
from launcher.selectors import (
    RUN_LIST_PAGE_SIZE,
    RUN_SEARCH_WINDOW,
    RunFilters,
    duration_display,
    run_filter_choices,
    run_rows,
    runs_for_list,
    runs_page,
)
from launcher.services.api_status import api_outage
from launcher.services.run_sync import runs_refresh_many
from launcher.services.runs import RunActionFailed, run_cancel, run_retry

PAGE = "launcher/run_list.html"
TABLE_FRAGMENT = f"{PAGE}#run-table"
FILTER_FRAGMENT = f"{PAGE}#filter-form"
CACHED_FRAGMENT = "launcher/html_fragment.html"
# The rendered table, by URL and fingerprint: rendering 50 rows is most of a list request's
# time, and every viewer of a page (and every poll that is not a 204) shows the same table.
# The fingerprint covers everything a row shows, so a change is a new key, never a stale hit.
TABLE_CACHE_SECONDS = 60
# The rendered filter form, by its filters and the filter choices' version: its hundred-odd
# options were most of the page's template time. The form parses its values without the
# database, so the same filters and the same choices are the same HTML, whoever asks; a change
# to the choices is a new version, so a new key.
FILTER_FORM_CACHE_SECONDS = 3600
BULK_LIMIT = RUN_LIST_PAGE_SIZE
BULK_ACTIONS = {"cancel": (run_cancel, "Cancel requested"), "retry": (run_retry, "Retry started")}
# Query-string keys that are not filters: the page's position.
CURSOR_KEYS = ("before", "after", "page")
# The fingerprint of what the polled region shows, sent back by each poll (hx-headers).
VERSION_HEADER = "X-Poll-Version"


@require_GET
@permission_required(LAUNCH_RUN)
def run_list(request):
    filters = _filters_of(request.GET.urlencode())
    before, after, cursor_broken = run_list_cursors(request.GET)
    runs = runs_for_list(filters)
    page = runs_page(runs, before=before, after=after, number=_page_number(request.GET))
    rows = run_rows(page.runs)
    unfinished = [run for run in rows if not run.is_finished]
    if unfinished and runs_refresh_many(unfinished, viewer=True):
        # Some changed: read the page again (the refresh updated its own copies of the rows).
        rows = run_rows(runs.filter(pk__in=[run.pk for run in rows]))
    polling = any(not run.is_finished for run in rows)
    outage = api_outage() if polling else None
    version = run_rows_fingerprint(rows, page.newer, page.older, polling, outage)
    if request.htmx and request.headers.get(VERSION_HEADER) == version:
        # The page already shows exactly this: htmx swaps nothing on a 204.
        return HttpResponse(status=204)
    filter_query = _query_without(request.GET, *CURSOR_KEYS)
    context = {
        "page": page,
        "runs": rows,
        "polling": polling,
        "outage": outage,
        "query": filter_query,
        "poll_version": version,
        "search_window": RUN_SEARCH_WINDOW if filters.search else None,
    }
    context["table_html"] = _table_html(request, context)
    if request.htmx:
        return render(request, CACHED_FRAGMENT, {**context, "html": context["table_html"]})
    form = RunFilterForm(request.GET)  # the page shows each filter's value and error
    form.is_valid()
    context.update(
        nav="runs",
        form=form,
        cursor_broken=cursor_broken,
        filter_form_html=_filter_form_html(request, form, filter_query),
    )
    return render(request, PAGE, context)


def _filter_form_html(request, form: RunFilterForm, filter_query: str) -> str:
    version = cache_version(RUN_FILTER_CHOICES)
    key = "launcher:runs-filter-form:" + fingerprint([version, filter_query])
    html = cache.get(key)
    if html is None:
        choices = run_filter_choices(batch=form.cleaned_data.get("batch"), version=version)
        html = render_to_string(FILTER_FRAGMENT, {"form": form, "choices": choices}, request)
        cache.set(key, html, FILTER_FORM_CACHE_SECONDS)
    return mark_safe(html)  # noqa: S308 - our own template's output


def _table_html(request, context: dict) -> str:
    key = "launcher:runs-table:" + fingerprint([request.get_full_path(), context["poll_version"]])
    html = cache.get(key)
    if html is None:
        for run in context["runs"]:
            run.duration_text = duration_display(run.duration)
        html = render_to_string(TABLE_FRAGMENT, context, request=request)
        cache.set(key, html, TABLE_CACHE_SECONDS)
    return mark_safe(html)  # noqa: S308 - our own template's output


@functools.lru_cache(maxsize=256)
def _filters_of(query: str) -> RunFilters:
    """The filters a query string asks for. A pure function of the string (the form parses
    without the database) and a frozen value, so kept per process: every poll of a page sends
    the same query, and a Django form's set-up and validation cost more than the poll's own
    work."""
    return RunFilterForm(QueryDict(query)).filters()


def _page_number(params: QueryDict) -> int:
    value = params.get("page", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 6 else 1


def _query_without(params: QueryDict, *keys: str) -> str:
    query = params.copy()
    for key in keys:
        query.pop(key, None)
    return query.urlencode()


def _run_ids(values: list[str]) -> list[int]:
    """The ticked run ids that can be ids at all (`id_parse`); anything else is not a run of
    ours, so it is left out."""
    ids = [id_parse(value) for value in values]
    return [pk for pk in ids if pk is not None][:BULK_LIMIT]


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
