"""The batch pages' query counts, pinned: the list, the new batch form and its preview, the
batch page and its polled progress fragment, the CSV export — each the same for few rows as
for many (batches in the list, rows pasted into the form, runs in a batch).

Every count is the steady state: the workflow mirror and the model catalog are fresh (no
upstream call inside the measured block), and the batch's unfinished runs were refreshed
within the interval unless the test says they are due.

The first four queries of every request are the session, the user, and the user's and the
groups' permissions (`permission_required(LAUNCH_RUN)`).
"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from launcher.models import Batch, PromptMode, Run, RunStatus, Submission
from launcher.selectors import batch_export_runs, batch_input_keys
from tests.fake_cyberdesk import FakeCyberdesk, serve, upstream_run
from tests.launch_api import NOW, make_model, make_workflow

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}

# session, user, the permission; the mirror (exists, its age), the catalog's age;
# workflows; offered models, the default model's name; prompt versions, labels (the pickers).
FORM_QUERIES = 11
# The progress fragment: session, user, the permission; the batch (with workflow and
# creator); its unfinished runs (no refresh claim: all were refreshed within the interval, so
# none could win); the progress: its cells' kept counters (size, outcomes) and the count of
# its unfinished, queued, unknown and rejected runs.
DETAIL_QUERIES = 7
# The whole page adds the comparison region (tests/views/test_batch_decide.py): the grid's
# aggregates, its labels and its durations; the failure clusters' check for runs without a
# key (none), their totals, the largest clusters and their cells.
PAGE_QUERIES = DETAIL_QUERIES + 7


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def csrf(client) -> str:
    client.get(reverse("batch_list"))
    return client.cookies["csrftoken"].value


# Each run of a batch cycles through these, so a big batch has every kind of cell and status.
STATUSES = [
    (RunStatus.SUCCESS, Submission.ACCEPTED),
    (RunStatus.RUNNING, Submission.ACCEPTED),
    (RunStatus.TASK_FAILED, Submission.ACCEPTED),
    (RunStatus.SCHEDULING, Submission.ACCEPTED),
    (RunStatus.SCHEDULING, Submission.QUEUED),  # not sent yet: no cyberdesk id
    (RunStatus.CANCELLED, Submission.ACCEPTED),
]


def matrix_batch(catalog, user, runs: int, *, synced_at=None) -> Batch:
    """A matrix batch of `runs` runs over 3 models (one the workflow default) × 3 prompts
    (two versions and the stored prompt), in every status, with inputs, outputs, checks and
    costs — everything the page, the grid and the export read."""
    other = make_model("GPT Operator")
    batch = Batch.objects.create(
        workflow=catalog.workflow, name="Compare", is_matrix=True, created_by=user
    )
    models = (catalog.model, other, None)
    prompts = (catalog.v1, catalog.v2, None)
    for n in range(runs):
        status, submission = STATUSES[n % len(STATUSES)]
        finished = status in (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.CANCELLED)
        version = prompts[(n // 3) % 3]
        Run.objects.create(
            workflow=catalog.workflow,
            batch=batch,
            batch_row=n + 1,
            cyberdesk_id=uuid.uuid4() if submission == Submission.ACCEPTED else None,
            submission=submission,
            status=status,
            launched_by=user,
            model_option=models[n % 3],
            prompt_mode=PromptMode.PINNED if version else PromptMode.STORED,
            prompt_version=version,
            started_at=NOW if finished else None,
            ended_at=NOW + timedelta(seconds=10 + n) if finished else None,
            cost_usd=Decimal("0.01") if finished else None,
            post_run_checks=[{"name": "Has invoice", "status": "success"}] if finished else [],
            input_values={"customer_id": f"c-{n}", f"extra_{n % 4}": n},
            output_data={"total": n} if status == RunStatus.SUCCESS else None,
            synced_at=synced_at or datetime.now(tz=UTC),
        )
    return batch


# --- The list -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batches", [2, 20])
def test_the_list_costs_the_same_however_many_batches(
    catalog, django_user_model, operator_client, django_assert_num_queries, batches
):
    for n in range(batches):
        # Each with a workflow, a creator and runs of its own: none may cost a query per row.
        workflow = make_workflow(name=f"Workflow {n}")
        user = django_user_model.objects.create_user(username=f"user-{n}")
        batch = Batch.objects.create(workflow=workflow, name=f"Batch {n}", created_by=user)
        for _ in range(n % 3):
            Run.objects.create(workflow=workflow, batch=batch, prompt_mode=PromptMode.STORED)
    operator_client.get(reverse("batch_list"))  # warm the session

    # session, user, the permission; the batches with workflow, creator and run count
    with django_assert_num_queries(4):
        response = operator_client.get(reverse("batch_list"))

    html = response.content.decode()
    assert response.status_code == 200
    assert len(response.context["batches"]) == batches
    assert f"user-{batches - 1}" in html and f"Workflow {batches - 1}" in html


# --- The new batch form and its preview ---------------------------------------------------------


def test_the_new_batch_form_costs_a_pinned_number_of_queries(
    catalog, operator_client, api, django_assert_num_queries
):
    operator_client.get(reverse("batch_new"))

    with django_assert_num_queries(FORM_QUERIES):
        response = operator_client.get(reverse("batch_new"))

    assert response.status_code == 200 and "form" in response.context
    assert api.requests == []  # a fresh mirror and catalog: no upstream call


def test_the_form_for_another_workflow_costs_the_same(
    catalog, operator_client, api, django_assert_num_queries
):
    other = make_workflow(name="Claims")
    operator_client.get(reverse("batch_new"))

    with django_assert_num_queries(FORM_QUERIES):
        response = operator_client.get(reverse("batch_new"), {"workflow": str(other.pk)})

    assert response.context["workflow"] == other
    assert api.requests == []


@pytest.mark.parametrize("rows", [3, 30])
def test_the_preview_costs_the_same_however_many_rows(
    catalog, operator_client, api, django_assert_num_queries, rows
):
    text = "customer_id,age\n" + "".join(f"c-{100 + n},{20 + n}\n" for n in range(rows))
    data = {
        "csrfmiddlewaretoken": csrf(operator_client),
        "token": str(uuid.uuid4()),
        "workflow": str(catalog.workflow.pk),
        "models": ["default", str(catalog.model.pk)],
        "prompts": ["stored", "label:production", f"version:{catalog.v1.pk}"],
        "source": "rows",
        "rows_text": text + "c-999,old\n",  # and one bad row, listed with its line number
        "preview": "1",
    }

    # The form's 12, plus resolving the two chosen prompts that are not the stored one (the
    # label with its version, the version); the rows themselves cost nothing.
    with django_assert_num_queries(FORM_QUERIES + 2):
        response = operator_client.post(reverse("batch_new"), data)

    html = response.content.decode()
    assert response.status_code == 200
    assert f"Preview: {rows * 2 * 3} runs" in html
    assert "1 bad row will be skipped" in html
    assert Run.objects.count() == 0 and api.requests == []


# --- The batch page and its progress fragment ---------------------------------------------------


@pytest.mark.parametrize("runs", [3, 30])
def test_the_batch_page_and_its_fragment_cost_the_same_however_many_runs(
    catalog, operator, operator_client, api, django_assert_num_queries, runs
):
    batch = matrix_batch(catalog, operator, runs)
    url = reverse("batch_detail", args=[batch.pk])
    operator_client.get(url)

    with django_assert_num_queries(PAGE_QUERIES):
        page = operator_client.get(url)
    with django_assert_num_queries(DETAIL_QUERIES):
        fragment = operator_client.get(url, headers=HTMX)

    assert page.status_code == 200 and fragment.status_code == 200
    assert page.context["progress"].total == runs
    assert sum(cell.runs for cell in page.context["grid"].cells) == runs
    assert 'id="batch-progress"' in fragment.content.decode()
    assert "<html" not in fragment.content.decode()
    assert api.requests == []  # every unfinished run was refreshed within the interval


@pytest.mark.parametrize("runs", [3, 30])
def test_a_finished_batch_costs_the_same_without_the_refresh(
    catalog, operator, operator_client, api, django_assert_num_queries, runs
):
    batch = matrix_batch(catalog, operator, runs)
    Run.objects.filter(batch=batch).update(status=RunStatus.SUCCESS)
    url = reverse("batch_detail", args=[batch.pk])
    operator_client.get(url)

    # No unfinished run: the read of unfinished runs finds none, so no claim, as when all
    # were refreshed within the interval.
    with django_assert_num_queries(DETAIL_QUERIES):
        fragment = operator_client.get(url, headers=HTMX)

    assert "every 2s" not in fragment.content.decode()
    assert api.requests == []


def test_the_progress_fragment_never_reads_the_grid(
    catalog, operator, operator_client, api, django_assert_num_queries
):
    batch = matrix_batch(catalog, operator, 6)
    url = reverse("batch_detail", args=[batch.pk])
    operator_client.get(url)

    with django_assert_num_queries(DETAIL_QUERIES):
        response = operator_client.get(url, headers=HTMX)

    assert 'id="batch-progress"' in response.content.decode()
    assert 'id="batch-decide"' not in response.content.decode()


@pytest.mark.parametrize("runs", [3, 30])
def test_a_due_refresh_with_no_news_is_one_list_call_at_a_constant_cost(
    catalog, operator, operator_client, clock, settings, django_assert_num_queries, runs
):
    settings.RUN_REFRESH_INTERVAL_SECONDS = 2.0
    fake = FakeCyberdesk()
    batch = matrix_batch(catalog, operator, runs, synced_at=NOW)
    for run in batch.runs.exclude(cyberdesk_id=None):
        fake.add(
            upstream_run(
                run.cyberdesk_id,
                workflow_id=catalog.workflow.pk,
                status=run.status,
                created_at=NOW,
            )
        )
    url = reverse("batch_detail", args=[batch.pk])
    with fake.serve():
        operator_client.get(url, headers=HTMX)  # warm the session (nothing due yet)
        clock.shift(timedelta(seconds=3))  # every unfinished run due again; no news upstream

        # The fragment's 6 and a claim that wins: the claim, the sweep of the workflow's
        # fresher runs, the claimed rows; the API's answer changes nothing, so no writes.
        with django_assert_num_queries(DETAIL_QUERIES + 3):
            response = operator_client.get(url, headers=HTMX)

    assert response.status_code == 200
    assert fake.calls["GET /v1/runs"] == 1


# --- The CSV export -----------------------------------------------------------------------------


@pytest.mark.parametrize("runs", [3, 30])
def test_the_export_costs_the_same_however_many_runs(
    catalog, operator, operator_client, api, django_assert_num_queries, runs
):
    batch = matrix_batch(catalog, operator, runs)
    url = reverse("batch_export", args=[batch.pk])
    operator_client.get(url)

    # session, user, the permission; the batch; the input names (the header); its runs
    # with model and version, one keyset chunk (1,000 runs) per read; the runs without a row
    with django_assert_num_queries(7):
        response = operator_client.get(url)
        body = b"".join(response.streaming_content).decode()  # the rows are made while streamed

    assert len(body.strip().splitlines()) == 1 + runs
    assert api.requests == []


def test_the_export_reads_every_run_once_in_row_order_a_chunk_at_a_time(
    catalog, operator, django_assert_num_queries
):
    batch = matrix_batch(catalog, operator, 30)
    # A run without a row (never from the planner) still goes out, after the rest.
    stray = Run.objects.create(workflow=catalog.workflow, batch=batch, prompt_mode="stored")
    expected = list(
        Run.objects.filter(batch=batch, batch_row__isnull=False)
        .order_by("batch_row", "pk")
        .values_list("pk", flat=True)
    ) + [stray.pk]

    # 30 runs with a row in chunks of 7: 5 reads (the last one short); the rowless: 1 read.
    with django_assert_num_queries(6):
        exported = [run.pk for run in batch_export_runs(batch, chunk=7)]

    assert exported == expected


def test_the_export_header_lists_every_input_name_from_the_database(catalog, operator):
    batch = matrix_batch(catalog, operator, 8)

    assert batch_input_keys(batch) == ["customer_id", "extra_0", "extra_1", "extra_2", "extra_3"]
