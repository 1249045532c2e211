"""The official `cyberdesk` SDK against the sandbox over real HTTP (live_server): every call
Launcher relies on, and every answer parsed by the SDK's own models. If the sandbox drifts from
the real API's shapes, these fail."""

import base64
import uuid
from datetime import timedelta

import pytest
import time_machine
from cyberdesk import (
    CyberdeskClient,
    ModelConfigurationResponse,
    RunCreate,
    RunField,
    RunListSortMode,
    RunResponse,
    RunStatus,
    RunUpdate,
    WorkflowResponse,
    WorkflowUpdate,
)
from django.utils import timezone
from openapi_client.cyberdesk_cloud_client.api.runs import (
    get_run_llm_costs_v1_runs_run_id_llm_costs_get as llm_costs_api,
)
from openapi_client.cyberdesk_cloud_client.models import (
    HTTPValidationError,
    RunBulkCreate,
    RunLlmCostsResponse,
    RunResponseWithIncludes,
    RunRetry,
    WorkflowResponseWithIncludes,
)
from openapi_client.cyberdesk_cloud_client.models.file_input import FileInput

from launcher.sandbox import seed
from launcher.sandbox.models import IdempotencyRecord

pytestmark = pytest.mark.django_db(transaction=True)

ELIGIBILITY_INPUTS = {
    "patient_name": "Ada Lovelace",
    "date_of_birth": "1815-12-10",
    "payer": "Aetna",
}
LONG_ENOUGH = timedelta(minutes=2)


@pytest.fixture
def sdk(live_server, settings):
    seed.seed_demo_data()
    # Deliveries are not under test here; keep them pointed at this test server.
    settings.SANDBOX_WEBHOOK_URL = live_server.url + "/webhooks/cyberdesk/"
    with CyberdeskClient(settings.SANDBOX_API_KEY, base_url=live_server.url + "/sandbox") as client:
        yield client


def _ok(response):
    """The wrapper hands back errors instead of raising: surface them."""
    assert response.error is None, response.error
    return response.data


def _create(sdk, **fields):
    body = RunCreate(
        workflow_id=seed.WORKFLOW_ELIGIBILITY,
        input_values=ELIGIBILITY_INPUTS,
        sensitive_input_values={"portal_password": "s3cret"},
        **fields,
    )
    return _ok(sdk.runs.create_sync(body))


def test_it_lists_and_reads_workflows(sdk):
    page = _ok(sdk.workflows.list_sync(include=["tags", "post_run_checks"], limit=50))

    assert page.total == 6
    assert all(isinstance(item, WorkflowResponse) for item in page.items)
    eligibility = next(w for w in page.items if w.id == seed.WORKFLOW_ELIGIBILITY)
    assert isinstance(eligibility.input_schema, str)
    assert {tag.name for tag in eligibility.tags} == {"Healthcare", "Production"}

    workflow = _ok(sdk.workflows.get_sync(str(seed.WORKFLOW_TIMESHEET)))
    assert isinstance(workflow, WorkflowResponseWithIncludes)
    assert workflow.post_run_checks[0].name == "Confirmation number captured"


def test_it_patches_a_workflow_and_keeps_its_history(sdk):
    updated = _ok(
        sdk.workflows.update_sync(str(seed.WORKFLOW_HELLO), WorkflowUpdate(main_prompt="Hi there"))
    )

    assert isinstance(updated, WorkflowResponse)
    assert updated.main_prompt == "Hi there"
    assert updated.old_versions[0].additional_properties["main_prompt"].startswith("Open Notepad")


def test_it_lists_model_configurations(sdk):
    models = _ok(sdk.model_configurations.list_sync())

    assert len(models) == 8
    assert all(isinstance(model, ModelConfigurationResponse) for model in models)
    default = _ok(sdk.model_configurations.get_sync(str(seed.MODEL_SONNET)))
    assert default.is_system_default is True


def test_it_creates_a_run_with_prompt_and_model_overrides_and_reads_it_back(sdk):
    run = _create(
        sdk, main_prompt="Check {patient_name} today", main_agent_model_id=seed.MODEL_OPUS
    )

    assert isinstance(run, RunResponse)
    assert run.status == RunStatus.SCHEDULING
    assert run.main_prompt == "Check {patient_name} today"
    assert run.model_metadata.main_agent_model_id == seed.MODEL_OPUS
    assert set(run.sensitive_input_aliases.additional_properties) == {"portal_password"}

    again = _ok(sdk.runs.get_sync(str(run.id), include=["workflow"]))
    assert isinstance(again, RunResponseWithIncludes)
    assert again.id == run.id
    assert again.included[0].type_ == "workflow"

    with time_machine.travel(timezone.now() + LONG_ENOUGH, tick=True):
        done = _ok(sdk.runs.get_sync(str(run.id)))
    assert done.status == RunStatus.SUCCESS
    output = done.output_data.additional_properties
    assert output["effective_model_id"] == str(seed.MODEL_OPUS)
    assert output["prompt_first_line"] == "Check {patient_name} today"


def test_it_lists_runs_with_filters_and_projection(sdk):
    first = _create(sdk)
    _ok(sdk.runs.create_sync(RunCreate(workflow_id=seed.WORKFLOW_HELLO)))

    page = _ok(
        sdk.runs.list_sync(
            workflow_id=str(seed.WORKFLOW_ELIGIBILITY),
            status=RunStatus.SCHEDULING,
            created_at_from=timezone.now() - timedelta(minutes=1),
            search="ada lovelace",
            sort_mode=RunListSortMode.CREATED_AT_DESC,
            fields=[RunField.STARTED_AT, RunField.ENDED_AT, RunField.ERROR],
            include=["workflow"],
            limit=1000,
        )
    )

    assert page.total == 1
    [item] = page.items
    assert item.id == first.id
    assert set(item.to_dict()) == {
        "id", "workflow_id", "machine_id", "status", "created_at", "started_at", "ended_at",
        "error",
    }  # fmt: skip
    assert [entry.id for entry in page.included] == [seed.WORKFLOW_ELIGIBILITY]


def test_it_bulk_creates_runs(sdk):
    result = _ok(
        sdk.runs.bulk_create_sync(
            RunBulkCreate(
                workflow_id=seed.WORKFLOW_ELIGIBILITY, count=3, input_values=ELIGIBILITY_INPUTS
            )
        )
    )

    assert len(result.created_runs) == 3
    assert result.failed_count == 0
    assert len({run.id for run in result.created_runs}) == 3


def test_it_cancels_then_retries_after_the_run_ends(sdk):
    run = _create(sdk)

    cancelled = _ok(sdk.runs.update_sync(str(run.id), RunUpdate(status=RunStatus.CANCELLED)))
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.ended_at is not None

    retried = _ok(sdk.runs.retry_sync(str(run.id), RunRetry()))
    assert (retried.id, retried.status) == (run.id, RunStatus.SCHEDULING)

    with time_machine.travel(timezone.now() + LONG_ENOUGH, tick=True):
        assert _ok(sdk.runs.get_sync(str(run.id))).status == RunStatus.SUCCESS
        again = _ok(sdk.runs.retry_sync(str(run.id), RunRetry()))
    assert again.status == RunStatus.SCHEDULING


def test_a_retry_of_an_active_run_is_refused(sdk):
    run = _create(sdk)

    response = sdk.runs.retry_sync(str(run.id), RunRetry())

    assert response.data is None
    assert response.error.status_code == 409


def test_it_reports_llm_costs(sdk):
    run = _create(sdk)

    with time_machine.travel(timezone.now() + LONG_ENOUGH, tick=True):
        costs = llm_costs_api.sync(run_id=run.id, client=sdk._client)

    assert isinstance(costs, RunLlmCostsResponse)
    assert costs.run_id == run.id
    assert costs.rows[0].model == "claude-sonnet-4-5-20250929"
    assert costs.total_cost_usd > 0


def test_it_serves_run_attachments(sdk):
    run = _ok(
        sdk.runs.create_sync(
            RunCreate(
                workflow_id=seed.WORKFLOW_INVOICE,
                input_values={
                    "invoice_filename": "a.pdf",
                    "invoice_total": 3,
                    "line_item_count": 1,
                },
                file_inputs=[
                    FileInput(filename="a.pdf", content=base64.b64encode(b"%PDF").decode())
                ],
            )
        )
    )

    page = _ok(sdk.run_attachments.list_sync(run_id=str(run.id)))
    [attachment] = page.items
    assert attachment.filename == "a.pdf" and attachment.size_bytes == 4
    link = _ok(sdk.run_attachments.get_download_url_sync(str(attachment.id), expires_in=60))
    assert link.expires_in == 60 and link.url.startswith("http")
    assert _ok(sdk.run_attachments.download_sync(str(attachment.id))) == b"%PDF"


def test_validation_errors_parse_as_the_sdks_http_validation_error(sdk):
    response = sdk.runs.create_sync(
        RunCreate(workflow_id=seed.WORKFLOW_ELIGIBILITY, input_values={"payer": "Nobody"})
    )

    problem = response.data
    assert isinstance(problem, HTTPValidationError)
    locs = {tuple(item.loc) for item in problem.detail}
    assert ("body", "input_values", "payer") in locs
    assert ("body", "input_values", "patient_name") in locs


def test_business_errors_come_back_as_unexpected_status_with_a_string_detail(sdk):
    unknown_model = sdk.runs.create_sync(
        RunCreate(workflow_id=seed.WORKFLOW_HELLO, main_agent_model_id=uuid.uuid4())
    )
    unknown_workflow = sdk.runs.create_sync(RunCreate(workflow_id=uuid.uuid4()))

    assert unknown_model.error.status_code == 400
    assert unknown_workflow.error.status_code == 404


def test_the_sdks_automatic_idempotency_key_is_accepted(sdk):
    _create(sdk)

    assert IdempotencyRecord.objects.count() == 1
