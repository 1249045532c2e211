"""The batch page's "Which is better" region: the grid against a baseline, the "By input row"
view, the failure clusters and "Retry this cluster" (with its confirmation, no JavaScript
needed) — who may, what each shows, and the query counts, pinned at few and many runs."""

import re
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from launcher import tasks
from launcher.batch_grid import cell_key
from launcher.models import Batch, Run, RunStatus
from tests.batch_data import add_runs
from tests.csrf import csrf_headers
from tests.fake_cyberdesk import serve
from tests.launch_api import NOW
from tests.views.test_batch_queries import DETAIL_QUERIES, PAGE_QUERIES, matrix_batch

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
DECIDE = {"HX-Request": "true", "HX-Target": "batch-decide"}
NOT_FOUND = ["Customer 'c-101' not found", "Customer 'c-207' not found"]


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


@pytest.fixture
def batch(catalog):
    """2 models × 2 versions, finished: 5/10, 10/10, 7/10, 4/10."""
    batch = Batch.objects.create(
        workflow=catalog.workflow, name="Compare", is_matrix=True, state=Batch.State.SUBMITTED
    )
    add_runs(batch, version=catalog.v1, successes=5, failures=5, errors=NOT_FOUND)
    add_runs(batch, version=catalog.v2, successes=10)
    add_runs(
        batch,
        model=catalog.model,
        version=catalog.v1,
        successes=7,
        failures=3,
        checks=[{"name": "Has invoice", "status": "failed"}],
    )
    add_runs(
        batch,
        model=catalog.model,
        version=catalog.v2,
        successes=4,
        failures=6,
        errors=["Login page did not load"],
    )
    return batch


def url(batch, **query) -> str:
    base = reverse("batch_detail", args=[batch.pk])
    return base + (
        "?" + "&".join(f"{k}={quote(str(v))}" for k, v in query.items()) if query else ""
    )


# --- Who may ------------------------------------------------------------------------------------


def test_outsiders_get_403_everywhere(batch, outsider_client):
    retry = reverse("batch_cluster_retry", args=[batch.pk])
    assert outsider_client.get(url(batch, view="rows")).status_code == 403
    assert outsider_client.get(url(batch), headers=DECIDE).status_code == 403
    assert outsider_client.get(retry, {"cluster": "check:Has invoice"}).status_code == 403
    assert outsider_client.post(retry, {"cluster": "check:Has invoice"}).status_code == 403


def test_retrying_a_cluster_needs_the_csrf_token(batch, operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    retry = reverse("batch_cluster_retry", args=[batch.pk])

    assert client.post(retry, {"cluster": "check:Has invoice"}).status_code == 403
    assert retry_tasks() == []


# --- The grid -----------------------------------------------------------------------------------


def test_the_page_shows_the_grid_against_the_default_baseline(catalog, batch, operator_client, api):
    response = operator_client.get(url(batch))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="batch-decide"' in html and 'id="decide-heading">Comparison</h2>' in html
    assert "Fisher&#x27;s exact test, two-sided, α = 0.05" in html
    assert "The baseline is the production version with the workflow's default model." in html
    baseline = cell_key(None, catalog.v1.pk)
    assert f'<option value="{baseline}" selected>' in html
    assert "50% (5/10) <span" in html and ">24–76%</span>" in html
    assert "+50 pts" in html and "verdict-better" in html  # 10/10 against 5/10
    assert f'href="/runs/?batch={batch.pk}&amp;model=default&amp;prompt={catalog.v1.pk}"' in html
    assert "every 5s" not in html  # a finished batch: no poll


def test_picking_a_baseline_is_a_get_that_works_without_javascript(
    catalog, batch, operator_client, api
):
    picked = cell_key(None, catalog.v2.pk)

    response = operator_client.get(url(batch, baseline=picked))

    html = response.content.decode()
    assert f'<option value="{picked}" selected>' in html
    assert response.context["grid"].baseline.label == "Workflow default · v2"
    assert html.count("verdict-worse") == 2  # 5/10 and 4/10 against 10/10


def test_htmx_gets_the_region_alone(catalog, batch, operator_client, api):
    picked = cell_key(catalog.model.pk, catalog.v1.pk)

    response = operator_client.get(url(batch, baseline=picked), headers=DECIDE)

    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section id="batch-decide"')
    assert 'id="batch-progress"' not in html
    assert response.context["grid"].baseline.label == "Claude Sonnet · v1"


def test_an_unfinished_batch_polls_the_region(catalog, batch, operator_client, api):
    Run.objects.filter(batch=batch, batch_row=1).update(status=RunStatus.RUNNING)

    html = operator_client.get(url(batch), headers=DECIDE).content.decode()

    assert 'hx-trigger="every 5s, batch-finished from:body"' in html


def test_the_region_polls_while_the_worker_retries(batch, operator_client, api):
    Batch.objects.filter(pk=batch.pk).update(retry_requested_at=NOW)

    html = operator_client.get(url(batch), headers=DECIDE).content.decode()

    assert "every 5s" in html


def test_a_history_restore_gets_the_whole_page(batch, operator_client, api):
    headers = {**HTMX, "HX-History-Restore-Request": "true"}

    html = operator_client.get(url(batch, view="rows"), headers=headers).content.decode()

    assert "<html" in html and 'id="batch-progress"' in html and "Runs by input row" in html


def test_the_last_progress_poll_tells_the_region_to_refresh(batch, operator_client, api):
    done = operator_client.get(url(batch), headers=HTMX)
    Run.objects.filter(batch=batch, batch_row=1).update(status=RunStatus.RUNNING)
    running = operator_client.get(url(batch), headers=HTMX)

    assert done.headers["HX-Trigger"] == '{"batch-finished": {}}'
    assert "HX-Trigger" not in running.headers


@pytest.mark.parametrize(
    "query",
    [
        {"baseline": "nonsense"},
        {"view": "other"},
        {"view": "rows", "page": "abc"},
        {"view": "rows", "page": "-4"},
        {"view": "rows", "page": "99999999999999"},
    ],
)
def test_bad_parameters_never_fail(batch, operator_client, api, query):
    response = operator_client.get(url(batch, **query))
    assert response.status_code == 200


# --- By input row -------------------------------------------------------------------------------


def test_the_by_input_row_view(catalog, batch, operator_client, api):
    page = operator_client.get(url(batch)).content.decode()
    link = re.search(r'<a href="([^"]+)"[^>]*>By input row</a>', page)
    assert link is not None

    response = operator_client.get(
        reverse("batch_detail", args=[batch.pk]) + link.group(1).replace("&amp;", "&")
    )

    html = response.content.decode()
    assert response.status_code == 200 and response.context["view"] == "rows"
    assert 'aria-label="Runs by input row"' in html
    first = Run.objects.get(batch=batch, batch_row=1, model_option=None, prompt_version=catalog.v1)
    other = Run.objects.get(batch=batch, batch_row=1, model_option=None, prompt_version=catalog.v2)
    assert f'href="/runs/{first.pk}/"' in html
    assert '<span class="badge status-success">Success</span> 30s' in html
    assert f'href="/runs/compare/?a={first.pk}&amp;b={other.pk}">Compare row 1</a>' in html
    sonnet = Run.objects.get(
        batch=batch, batch_row=1, model_option=catalog.model, prompt_version=catalog.v1
    )
    assert f"/runs/compare/?a={first.pk}&amp;b={sonnet.pk}" in html  # four runs: pick any
    assert (
        f'href="/runs/?batch={batch.pk}&amp;model={catalog.model.pk}&amp;prompt={catalog.v2.pk}"'
        in html
    )
    assert "Failure clusters" not in html


def test_the_rows_come_in_pages(catalog, operator_client, api, monkeypatch):
    from launcher import batch_rows

    monkeypatch.setattr(batch_rows, "ROWS_PER_PAGE", 4)
    batch = Batch.objects.create(workflow=catalog.workflow, is_matrix=True)
    add_runs(batch, version=catalog.v1, successes=10)

    first = operator_client.get(url(batch, view="rows")).content.decode()
    last = operator_client.get(url(batch, view="rows", page=3)).content.decode()

    assert "Rows 1–4" in first and "Next rows" in first and "Previous rows" not in first
    assert "Rows 9–10" in last and "Next rows" not in last and "Previous rows" in last


# --- Failure clusters ---------------------------------------------------------------------------


def retry_tasks() -> list[list]:
    path = tasks.batch_retry_task.module_path
    return [t.args_kwargs["args"] for t in DBTaskResult.objects.filter(task_path=path)]


def test_the_clusters_are_listed_with_a_retry_link(batch, operator_client, api):
    html = operator_client.get(url(batch)).content.decode()

    assert "Failure clusters" in html
    assert "14 failed runs in 3 clusters" in html
    assert "<code>Customer &lt;value&gt; not found</code>" in html
    assert "Has invoice" in html and "Login page did not load" in html
    retry = reverse("batch_cluster_retry", args=[batch.pk])
    assert f'href="{retry}?cluster=error%3ACustomer%20%3Cvalue%3E%20not%20found"' in html


def test_retry_this_cluster_asks_first_then_retries_in_the_background(
    batch, operator, django_capture_on_commit_callbacks
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    retry = reverse("batch_cluster_retry", args=[batch.pk])
    key = "check:Has invoice"

    confirm = client.get(retry, {"cluster": key})

    html = confirm.content.decode()
    assert confirm.status_code == 200 and retry_tasks() == []
    assert "Retry this cluster?" in html and "3 runs" in html and "Retry 3 runs" in html
    token = (
        confirm.cookies["csrftoken"].value
        if "csrftoken" in confirm.cookies
        else client.cookies["csrftoken"].value
    )
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(retry, {"cluster": key, "csrfmiddlewaretoken": token}, follow=True)

    assert done.redirect_chain[-1][0] == reverse("batch_detail", args=[batch.pk])
    assert "Retrying 3 runs of this cluster, in the background" in done.content.decode()
    ((batch_id, targets, _, user_id),) = retry_tasks()
    wanted = set(Run.objects.filter(batch=batch, failure_key=key).values_list("pk", flat=True))
    assert {pk for pk, _ in targets} == wanted and user_id == operator.pk


def test_a_cluster_that_is_gone_goes_back_to_the_batch(batch, operator_client):
    retry = reverse("batch_cluster_retry", args=[batch.pk])

    response = operator_client.get(retry, {"cluster": "error:nothing like it"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("batch_detail", args=[batch.pk])
    assert "No failed run is left in that cluster." in response.content.decode()
    assert operator_client.get(retry).status_code == 302  # no cluster named at all


def test_a_cluster_key_with_a_nul_character_is_no_cluster(batch, operator_client):
    # No stored key holds U+0000 (PostgreSQL stores it in no text column, and asking it for one
    # is an error): such a key names no cluster, on the confirmation GET and on the POST alike.
    retry = reverse("batch_cluster_retry", args=[batch.pk])

    shown = operator_client.get(retry, {"cluster": "error:a\x00b"})
    posted = operator_client.post(
        retry, {"cluster": "error:a\x00b"}, headers=csrf_headers(operator_client)
    )

    assert shown.status_code == posted.status_code == 302
    assert posted["Location"] == reverse("batch_detail", args=[batch.pk])
    assert retry_tasks() == []


# --- Query counts -------------------------------------------------------------------------------

# Time is frozen (`clock`): a slow machine must not let the refresh interval run out between
# two requests, which would add the refresh's claim to a count.

# The region alone: session, user, the permission; the batch; the progress (its cells' kept
# counters and its unfinished runs' count: whether to poll); the grid's aggregates, labels
# and durations; then either the clusters' check for runs without a key, totals, largest
# clusters and their cells, or the page's row numbers and its runs.
DECIDE_QUERIES = 6 + 3 + 4
ROWS_QUERIES = 6 + 3 + 2


@pytest.mark.parametrize("runs", [6, 60])
def test_the_page_and_the_region_cost_the_same_however_many_runs(
    catalog, operator, operator_client, api, clock, django_assert_num_queries, runs
):
    batch = matrix_batch(catalog, operator, runs)
    operator_client.get(url(batch))

    with django_assert_num_queries(PAGE_QUERIES):
        page = operator_client.get(url(batch))
    with django_assert_num_queries(DECIDE_QUERIES):
        region = operator_client.get(url(batch), headers=DECIDE)
    # The page: the progress part, then the region without its own batch and progress reads.
    with django_assert_num_queries(DETAIL_QUERIES + ROWS_QUERIES - 6):
        rows = operator_client.get(url(batch, view="rows"))
    with django_assert_num_queries(ROWS_QUERIES):
        rows_region = operator_client.get(url(batch, view="rows"), headers=DECIDE)

    assert sum(cell.runs for cell in page.context["grid"].cells) == runs
    assert page.context["clusters"].failed == runs // 6
    assert region.status_code == 200 and rows.status_code == 200
    assert len(rows.context["rows_page"].rows) == min(runs, 50)
    assert rows_region.context["rows_page"].has_next == (runs > 50)
    assert api.requests == []


def test_a_batch_without_failures_or_versions_costs_less(
    catalog, operator, operator_client, api, clock, django_assert_num_queries
):
    batch = Batch.objects.create(workflow=catalog.workflow)
    add_runs(batch, successes=3)
    operator_client.get(url(batch))

    # No version in the grid: no labels query; no failure: the clusters' key check and totals only.
    with django_assert_num_queries(DECIDE_QUERIES - 3):
        operator_client.get(url(batch), headers=DECIDE)


def test_a_batch_of_one_cell_has_no_baseline_to_pick(catalog, operator_client, api):
    batch = Batch.objects.create(workflow=catalog.workflow)
    add_runs(batch, version=catalog.v1, successes=2, failures=1)

    html = operator_client.get(url(batch)).content.decode()

    assert "67% (2/3)" in html and 'name="baseline"' not in html
    assert "By input row" in html


def test_the_rows_view_can_keep_only_the_rows_where_the_cells_differ(
    catalog, batch, operator_client, api
):
    # Rows 1–4 succeeded in every cell; from row 5 on, some cell failed where another passed.
    page = operator_client.get(url(batch, view="rows")).content.decode()
    link = re.search(r'<a href="\?([^"]+)"[^>]*>Only rows where the cells differ</a>', page)

    response = operator_client.get(url(batch) + "?" + link.group(1).replace("&amp;", "&"))

    rows = response.context["rows_page"].rows
    html = response.content.decode()
    assert response.context["rows_page"].differing_only
    assert [row.number for row in rows] == [5, 6, 7, 8, 9, 10]
    assert "Show every row" in html


@pytest.mark.parametrize("rows", [4, 80])
def test_the_rows_that_differ_cost_the_same_however_many(
    catalog, operator_client, api, clock, django_assert_num_queries, rows
):
    batch = Batch.objects.create(workflow=catalog.workflow, is_matrix=True)
    add_runs(batch, version=catalog.v1, successes=rows)
    add_runs(batch, version=catalog.v2, successes=rows // 2, failures=rows - rows // 2)
    operator_client.get(url(batch, view="rows", differ=1))

    with django_assert_num_queries(ROWS_QUERIES):
        response = operator_client.get(url(batch, view="rows", differ=1), headers=DECIDE)

    page = response.context["rows_page"]
    assert page.rows[0].number == rows // 2 + 1
    assert len(page.rows) == min(50, rows - rows // 2) and page.has_next == (rows > 100)


def test_a_cells_link_lists_exactly_its_runs(catalog, batch, operator_client, api):
    grid = operator_client.get(url(batch)).context["grid"]
    cell = next(c for c in grid.cells if c.label == "Claude Sonnet · v2")

    response = operator_client.get(cell.runs_url)

    listed = {run.pk for run in response.context["runs"]}
    wanted = Run.objects.filter(batch=batch, model_option=catalog.model, prompt_version=catalog.v2)
    assert response.status_code == 200 and listed == set(wanted.values_list("pk", flat=True))
