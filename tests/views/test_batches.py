"""Batch pages: the new batch form with its preview and line-numbered errors, the launch that
plans exactly the valid rows, the batch page with live progress and the comparison grid, its
actions and its CSV export."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from launcher import tasks
from launcher.models import Batch, PromptMode, Run, RunStatus
from tests.csrf import csrf_headers
from tests.fake_cyberdesk import serve
from tests.launch_api import NOW, make_model, make_run, make_workflow

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
ROWS = "customer_id,age\nc-100,42\nc-101,old\nc-102,50\n"


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def csrf(client) -> str:
    client.get(reverse("batch_list"))
    return client.cookies["csrftoken"].value


def post_form(client, catalog, **data):
    values = {
        "csrfmiddlewaretoken": csrf(client),
        "token": str(uuid.uuid4()),
        "workflow": str(catalog.workflow.pk),
        "models": ["default"],
        "prompts": ["stored"],
        "source": "rows",
        "rows_text": ROWS,
        "preview": "1",
    }
    values.update(data)
    return client.post(reverse("batch_new"), values)


# --- Who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, args",
    [
        ("batch_list", []),
        ("batch_new", []),
        ("batch_detail", [1]),
        ("batch_export", [1]),
    ],
)
def test_outsiders_get_403(catalog, outsider_client, name, args):
    Batch.objects.create(pk=1, workflow=catalog.workflow)
    assert outsider_client.get(reverse(name, args=args)).status_code == 403


@pytest.mark.parametrize("name", ["batch_cancel", "batch_retry_failed"])
def test_actions_are_posts_for_operators_only(catalog, operator_client, outsider_client, name):
    batch = Batch.objects.create(workflow=catalog.workflow)
    token = csrf_headers(outsider_client)  # so the 403 is the permission check's
    assert outsider_client.post(reverse(name, args=[batch.pk]), headers=token).status_code == 403
    assert operator_client.get(reverse(name, args=[batch.pk])).status_code == 405
    # CSRF is enforced: no token, no action.
    assert operator_client.post(reverse(name, args=[batch.pk])).status_code == 403


# --- The form and its preview -------------------------------------------------------------------


def test_the_form_offers_models_prompts_and_both_input_sources(catalog, operator_client, api):
    response = operator_client.get(reverse("batch_new"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "<legend>Models</legend>" in html and "Claude Sonnet" in html
    assert "Old Model" not in html  # disabled by staff
    assert "<legend>Prompts</legend>" in html and "production (v1)" in html
    assert "Rows from a CSV or JSON Lines file" in html and "A number of identical runs" in html
    assert "Sensitive inputs ($name) and files cannot come from a batch" in html


def test_the_preview_counts_the_runs_and_lists_bad_rows_with_line_numbers(
    catalog, operator_client, api
):
    response = post_form(
        operator_client, catalog, models=["default", str(catalog.model.pk)], prompts=["stored"]
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "Preview: 4 runs" in html  # 2 valid rows × 2 models × 1 prompt
    assert "1 bad row will be skipped" in html
    assert '<td class="num">3</td>' in html and "age: Enter a whole number." in html
    assert "Launch 4 runs" in html
    assert "c-101,old" in html  # the rows are kept for the launch
    assert Run.objects.count() == 0 and api.creates == []


def test_an_uploaded_file_is_read_and_kept_in_the_rows_box(catalog, operator_client, api):
    upload = SimpleUploadedFile(
        "rows.jsonl", b'{"customer_id": "c-100", "age": 42}\n\n{"customer_id": "c-101"}\n'
    )

    response = post_form(operator_client, catalog, rows_text="", rows_file=upload)

    html = response.content.decode()
    assert "Preview: 1 run" in html
    assert '<td class="num">3</td>' in html and "age: This field is required." in html
    assert "{&quot;customer_id&quot;: &quot;c-100&quot;, &quot;age&quot;: 42}" in html


def test_file_level_problems_are_shown_next_to_the_rows(catalog, operator_client, api):
    empty = post_form(operator_client, catalog, rows_text="")
    assert "The file is empty" in empty.content.decode()

    header = post_form(operator_client, catalog, rows_text="customer_id,colour\nc-100,red\n")
    assert "Unknown input keys: colour." in header.content.decode()
    assert Run.objects.count() == 0


def test_launch_without_preview_previews_first_when_rows_are_bad(catalog, operator_client, api):
    response = post_form(operator_client, catalog, preview="", launch="1")

    assert response.status_code == 200
    assert "Some rows are bad" in response.content.decode()
    assert Run.objects.count() == 0


def test_launch_after_preview_plans_only_the_valid_rows(
    catalog, operator, operator_client, api, django_capture_on_commit_callbacks
):
    preview = post_form(operator_client, catalog, prompts=["stored", "label:production"])
    previewed = preview.context["form"].data["previewed"]
    token = preview.context["form"].data["token"]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_form(
            operator_client,
            catalog,
            prompts=["stored", "label:production"],
            token=token,
            previewed=previewed,
            preview="",
            launch="1",
            name="Spring invoices",
        )

    batch = Batch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("batch_detail", args=[batch.pk])
    assert batch.name == "Spring invoices" and batch.is_matrix
    assert batch.created_by == operator
    assert batch.runs.count() == 4  # 2 valid rows × 1 model × 2 prompts
    assert sorted(set(batch.runs.values_list("batch_row", flat=True))) == [1, 3]  # row 2 was bad
    # The sending task, enqueued once on commit (beside it, the runs filter's choices bump).
    assert [c.__qualname__ for c in callbacks].count("batch_create.<locals>.<lambda>") == 1
    assert len(callbacks) == 2


def test_a_changed_form_after_preview_is_previewed_again(catalog, operator_client, api):
    preview = post_form(operator_client, catalog)
    previewed = preview.context["form"].data["previewed"]

    response = post_form(
        operator_client,
        catalog,
        rows_text=ROWS + "c-103,nope\n",
        previewed=previewed,
        preview="",
        launch="1",
    )

    assert response.status_code == 200 and Run.objects.count() == 0


def test_a_clean_file_launches_straight_away(catalog, operator_client, api):
    response = post_form(
        operator_client, catalog, rows_text="customer_id,age\nc-100,42\n", preview="", launch="1"
    )

    assert response.status_code == 302
    assert Run.objects.get().input_values == {"customer_id": "c-100", "age": 42}


def test_a_count_of_identical_runs(catalog, operator_client, api):
    response = post_form(
        operator_client,
        catalog,
        source="count",
        count="3",
        inputs_json='{"customer_id": "c-100", "age": 42}',
        preview="",
        launch="1",
    )

    assert response.status_code == 302
    assert Run.objects.count() == 3
    assert not Batch.objects.get().is_matrix


def test_the_same_form_posted_twice_makes_one_batch(catalog, operator_client, api):
    token = str(uuid.uuid4())
    data = {"rows_text": "customer_id,age\nc-100,42\n", "preview": "", "launch": "1"}

    first = post_form(operator_client, catalog, token=token, **data)
    second = post_form(operator_client, catalog, token=token, **data)

    assert first["Location"] == second["Location"]
    assert Batch.objects.count() == 1 and Run.objects.count() == 1


def test_a_prompt_filling_secrets_is_refused_on_the_form(catalog, operator_client, api):
    response = post_form(operator_client, catalog, prompts=[f"version:{catalog.v2.pk}"])

    assert "v2 uses sensitive variables ({$api_key})" in response.content.decode()
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    "rows",
    [
        "customer_id,age,$api_key\nc-100,42,s3cret-value\n",
        '{"customer_id": "c-100", "age": 42, "$api_key": "s3cret-value"}\n',
    ],
)
def test_a_secret_pasted_into_the_rows_is_never_shown_again(catalog, operator_client, api, rows):
    response = post_form(operator_client, catalog, rows_text=rows)

    page = response.content.decode()
    assert response.status_code == 200
    assert "s3cret-value" not in page
    assert "Sensitive inputs cannot come from a batch ($api_key)" in page
    assert "c-100" in page  # the rest of what was typed is kept
    assert Run.objects.count() == 0


def test_a_secret_in_the_identical_runs_inputs_is_never_shown_again(catalog, operator_client, api):
    response = post_form(
        operator_client,
        catalog,
        source="count",
        count="2",
        inputs_json='{"customer_id": "c-100", "age": 42, "$api_key": "s3cret-value"}',
    )

    page = response.content.decode()
    assert "s3cret-value" not in page
    assert "Sensitive inputs cannot come from a batch ($api_key)" in page
    assert "c-100" in page


def test_a_workflow_that_requires_a_secret_says_to_launch_one_at_a_time(operator_client, api):
    workflow = make_workflow(
        name="Bank login",
        input_schema={
            "type": "object",
            "required": ["$password"],
            "properties": {"$password": {"type": "string"}},
        },
    )

    response = operator_client.get(reverse("batch_new") + f"?workflow={workflow.pk}")

    html = response.content.decode()
    assert "This workflow needs secrets; launch its runs one at a time." in html
    assert "Launch batch" not in html


def test_too_many_runs_are_refused(catalog, operator_client, api, settings):
    settings.BATCH_MAX_RUNS = 3

    response = post_form(
        operator_client,
        catalog,
        rows_text="customer_id,age\nc-100,42\nc-101,43\n",
        models=["default", str(catalog.model.pk)],
        preview="",
        launch="1",
    )

    assert "That is 4 runs; a batch is at most 3." in response.content.decode()
    assert Run.objects.count() == 0


# --- The batch page -----------------------------------------------------------------------------


def matrix_batch(catalog, api):
    other = make_model("GPT Operator")
    batch = Batch.objects.create(workflow=catalog.workflow, name="Compare", is_matrix=True)
    checks_ok = [{"name": "Has invoice", "status": "success"}]
    checks_bad = [{"name": "Has invoice", "status": "failed"}]
    specs = [
        (catalog.model, catalog.v1, RunStatus.SUCCESS, 60, "0.01", checks_ok),
        (catalog.model, catalog.v1, RunStatus.SUCCESS, 120, "0.02", checks_ok),
        (catalog.model, catalog.v1, RunStatus.TASK_FAILED, 30, "0.01", checks_bad),
        (other, catalog.v1, RunStatus.RUNNING, None, None, []),
        (other, catalog.v2, RunStatus.ERROR, 10, None, []),
    ]
    for n, (model, version, status, seconds, cost, checks) in enumerate(specs):
        make_run(
            catalog.workflow,
            api=api,
            batch=batch,
            batch_row=n + 1,
            status=status,
            model_option=model,
            prompt_mode=PromptMode.PINNED,
            prompt_version=version,
            started_at=NOW if seconds else None,
            ended_at=NOW + timedelta(seconds=seconds) if seconds else None,
            cost_usd=Decimal(cost) if cost else None,
            post_run_checks=checks,
            input_values={"customer_id": f"c-{n}", "tags": ["a", "b"]},
            output_data={"total": n} if status == RunStatus.SUCCESS else None,
            synced_at=datetime.now(tz=UTC),
        )
    Run.objects.create(
        workflow=catalog.workflow,
        batch=batch,
        batch_row=6,
        prompt_mode=PromptMode.STORED,
        input_values={"customer_id": "=HYPERLINK(1)"},
    )  # still queued
    return batch


def test_the_batch_page_shows_progress_and_the_comparison_grid(catalog, operator_client, api):
    batch = matrix_batch(catalog, api)

    response = operator_client.get(reverse("batch_detail", args=[batch.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<progress class="batch-progress-bar" max="6" value="4"' in html
    assert "4 of 6 finished (67%)" in html
    assert 'hx-trigger="every 2s"' in html
    cells = {(c.model_name, c.prompt): c for c in response.context["grid"].cells}
    sonnet = cells[("Claude Sonnet", "v1")]
    assert (sonnet.runs, sonnet.rate_display, sonnet.checks_display) == (3, "67%", "67%")
    assert sonnet.median_duration == timedelta(seconds=60)
    assert sonnet.mean_cost.quantize(Decimal("0.0001")) == Decimal("0.0133")
    assert cells[("GPT Operator", "v2")].rate_display == "0%"
    assert cells[("GPT Operator", "v1")].success_rate is None
    assert cells[("Workflow default", "Stored prompt")].runs == 1
    assert "Cancel the rest" in html and "Retry failed runs" in html


def test_the_progress_region_is_a_fragment_that_stops_polling_when_done(
    catalog, operator_client, api
):
    batch = matrix_batch(catalog, api)
    Run.objects.filter(batch=batch).update(status=RunStatus.SUCCESS)

    response = operator_client.get(reverse("batch_detail", args=[batch.pk]), headers=HTMX)

    html = response.content.decode()
    assert 'id="batch-progress"' in html and "<html" not in html
    assert "every 2s" not in html
    assert "Cancel the rest" not in html


def action_tasks(task) -> list[list]:
    return [t.args_kwargs["args"] for t in DBTaskResult.objects.filter(task_path=task.module_path)]


def test_cancel_the_rest_answers_at_once_and_leaves_the_active_runs_to_the_worker(
    catalog, operator_client, api, django_capture_on_commit_callbacks
):
    batch = matrix_batch(catalog, api)
    token = csrf(operator_client)
    calls_before = len(api.requests)

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("batch_cancel", args=[batch.pk]), {"csrfmiddlewaretoken": token}
        )

    assert response.status_code == 302
    assert len(api.requests) == calls_before  # no API call in the request
    assert batch.runs.get(batch_row=6).status == RunStatus.CANCELLED  # queued: never sent
    running = batch.runs.get(batch_row=4)
    assert running.status == RunStatus.RUNNING  # the worker's
    page = operator_client.get(response["Location"]).content.decode()
    assert (
        "Batch cancelled. 1 run not sent yet will never be sent. "
        "Cancelling 1 run still active in the background…"
    ) in page
    assert "Cancelling its active runs in the background" in page

    (args,) = action_tasks(tasks.batch_cancel_task)
    tasks.batch_cancel_task.call(*args)

    running.refresh_from_db()
    assert running.status == RunStatus.CANCELLED
    assert len(api.calls("PATCH", f"/v1/runs/{running.cyberdesk_id}")) == 1
    assert batch.runs.filter(status=RunStatus.CANCELLED).count() == 2


def test_cancel_the_rest_with_htmx_answers_with_the_polling_progress_region(
    catalog, operator_client, api
):
    batch = matrix_batch(catalog, api)
    Run.objects.filter(batch=batch, batch_row=6).delete()  # nothing queued: only active runs
    token = csrf(operator_client)
    calls_before = len(api.requests)

    response = operator_client.post(
        reverse("batch_cancel", args=[batch.pk]), {"csrfmiddlewaretoken": token}, headers=HTMX
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="batch-progress"' in html and "<html" not in html
    assert "Cancelling 1 run still active in the background…" in html
    assert 'hx-trigger="every 2s"' in html
    assert "Cancel the rest" not in html
    assert len(api.requests) == calls_before


def test_retry_failed_answers_at_once_and_the_worker_retries_each_failed_run_once(
    catalog, operator_client, api, django_capture_on_commit_callbacks, settings
):
    settings.BATCH_CONCURRENCY = 1  # worker threads could not see this test's transaction
    batch = matrix_batch(catalog, api)
    for run in batch.runs.filter(status__in=[RunStatus.TASK_FAILED, RunStatus.ERROR]):
        api.runs[str(run.cyberdesk_id)]["status"] = run.status
    token = csrf(operator_client)

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("batch_retry_failed", args=[batch.pk]), {"csrfmiddlewaretoken": token}
        )

    assert api.calls("POST", "/retry") == []
    page = operator_client.get(response["Location"]).content.decode()
    assert "Retrying 2 runs that failed, in the background…" in page
    assert "Retry failed runs" not in page  # asked already

    (args,) = action_tasks(tasks.batch_retry_task)
    tasks.batch_retry_task.call(*args)
    tasks.batch_retry_task.call(*args)  # a second run of the same task: nothing more

    assert len(api.calls("POST", "/retry")) == 2
    assert set(batch.runs.filter(attempt=2).values_list("batch_row", flat=True)) == {3, 5}


def test_a_finished_batch_keeps_polling_while_its_retry_is_pending(catalog, operator_client, api):
    batch = matrix_batch(catalog, api)
    Run.objects.filter(batch=batch).exclude(status=RunStatus.TASK_FAILED).update(
        status=RunStatus.SUCCESS
    )
    url = reverse("batch_detail", args=[batch.pk])
    assert "every 2s" not in operator_client.get(url, headers=HTMX).content.decode()

    Batch.objects.filter(pk=batch.pk).update(retry_requested_at=NOW)

    html = operator_client.get(url, headers=HTMX).content.decode()
    assert 'hx-trigger="every 2s"' in html
    assert "Retrying its failed runs in the background" in html


def test_retry_failed_with_nothing_failed_says_so(catalog, operator_client, api):
    batch = Batch.objects.create(workflow=catalog.workflow)

    response = operator_client.post(
        reverse("batch_retry_failed", args=[batch.pk]),
        {"csrfmiddlewaretoken": csrf(operator_client)},
        headers=HTMX,
    )

    assert "No failed runs to retry." in response.content.decode()
    assert action_tasks(tasks.batch_retry_task) == []


def test_the_csv_export_has_inputs_outputs_and_outcome_and_no_formulas(
    catalog, operator_client, api
):
    batch = matrix_batch(catalog, api)

    response = operator_client.get(reverse("batch_export", args=[batch.pk]))

    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="batch-{batch.pk}.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 6
    first = rows[0]
    assert first["status"] == "success" and first["model"] == "Claude Sonnet"
    assert first["prompt"] == "v1" and first["input:customer_id"] == "c-0"
    assert first["input:tags"] == '["a", "b"]' and first["output_data"] == '{"total": 0}'
    assert first["duration_seconds"] == "60.0" and first["checks_passed"] == "1"
    assert rows[5]["input:customer_id"] == "'=HYPERLINK(1)"
    assert rows[5]["submission"] == "queued"


def test_the_batch_list_links_each_batch(catalog, operator_client):
    batch = Batch.objects.create(workflow=catalog.workflow, name="Nightly")
    Run.objects.create(workflow=catalog.workflow, batch=batch, prompt_mode="stored")

    html = operator_client.get(reverse("batch_list")).content.decode()

    assert f'href="{reverse("batch_detail", args=[batch.pk])}">Nightly</a>' in html
    assert reverse("batch_new") in html
