"""One test per endpoint: what goes on the wire, and what comes back typed."""

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import httpx
import pytest

from launcher.cyberdesk import types
from tests.cyberdesk import payloads
from tests.cyberdesk.conftest import API_KEY

WORKFLOW_UUID = UUID(payloads.WORKFLOW_ID)
RUN_UUID = UUID(payloads.RUN_ID)


def assert_common_headers(request):
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"].startswith("Launcher/")
    assert request.headers["Accept"] == "application/json"


def assert_read(request, method="GET"):
    assert_common_headers(request)
    assert request.method == method
    assert "Idempotency-Key" not in request.headers
    assert request.content == b""


def test_list_workflows_follows_every_page(client, api):
    first_page = [payloads.workflow(id=f"00000000-0000-4000-8000-{i:012d}") for i in range(100)]
    api.reply(
        httpx.Response(200, json=payloads.page(first_page, total=101)),
        httpx.Response(200, json=payloads.page([payloads.workflow()], total=101, skip=100)),
    )

    workflows = client.list_workflows()

    assert len(workflows) == 101
    assert workflows[-1].id == WORKFLOW_UUID
    first, second = api.requests
    assert_read(first)
    assert first.url.path == "/sandbox/v1/workflows"
    assert dict(first.url.params) == {
        "include": "tags,post_run_checks",
        "skip": "0",
        "limit": "100",
    }
    assert dict(second.url.params)["skip"] == "100"


def test_list_workflows_stops_on_an_empty_page_even_if_total_says_more(client, api):
    api.reply(httpx.Response(200, json=payloads.page([], total=5)))
    assert client.list_workflows() == []
    assert len(api.requests) == 1


def test_get_workflow_parses_the_schema_string_tags_and_metadata(client, api):
    api.reply(httpx.Response(200, json=payloads.workflow()))

    workflow = client.get_workflow(WORKFLOW_UUID)

    assert_read(api.last)
    assert api.last.url.path == f"/sandbox/v1/workflows/{payloads.WORKFLOW_ID}"
    assert workflow == types.Workflow(
        id=WORKFLOW_UUID,
        name="Download the monthly invoice",
        main_prompt=payloads.workflow()["main_prompt"],
        input_schema={
            "type": "object",
            "properties": {"portal": {"type": "string"}, "month": {"type": "string"}},
            "required": ["portal"],
        },
        output_schema=None,
        model_metadata=types.ModelMetadata(
            main_agent_model_id=UUID(payloads.MODEL_ID),
            fallback_model_1_id=UUID(payloads.FALLBACK_MODEL_ID),
        ),
        tags=["finance"],
        is_webhooks_enabled=True,
        last_run_errored=True,
        has_post_run_checks=True,
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        updated_at=datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        last_errored_run_start=datetime(2025, 5, 1, 9, 0, tzinfo=UTC),
        last_errored_run_id=UUID(payloads.RUN_ID),
    )


def test_update_workflow_patches_only_the_given_fields_with_an_idempotency_key(client, api):
    api.reply(httpx.Response(200, json=payloads.workflow(name="Renamed")))

    workflow = client.update_workflow(
        payloads.WORKFLOW_ID,
        name="Renamed",
        model_metadata=types.ModelMetadata(main_agent_model_id=UUID(payloads.MODEL_ID)),
    )

    request = api.last
    assert_common_headers(request)
    assert request.method == "PATCH"
    assert request.url.path == f"/sandbox/v1/workflows/{payloads.WORKFLOW_ID}"
    assert request.headers["Content-Type"] == "application/json"
    assert UUID(request.headers["Idempotency-Key"])
    assert api.body() == {
        "name": "Renamed",
        "model_metadata": {
            "main_agent_model_id": payloads.MODEL_ID,
            "cache_detection_model_id": None,
            "fallback_model_1_id": None,
            "fallback_model_2_id": None,
        },
    }
    assert workflow.name == "Renamed"


def test_update_workflow_sends_the_prompt_and_accepts_metadata_as_a_dict(client, api):
    api.reply(httpx.Response(200, json=payloads.workflow(main_prompt="New prompt")))

    client.update_workflow(
        WORKFLOW_UUID,
        main_prompt="New prompt",
        model_metadata={"fallback_model_2_id": payloads.MODEL_ID},
        idempotency_key="prompt-publish-7",
    )

    assert api.last.headers["Idempotency-Key"] == "prompt-publish-7"
    assert api.body()["main_prompt"] == "New prompt"
    assert api.body()["model_metadata"]["fallback_model_2_id"] == payloads.MODEL_ID
    assert api.body()["model_metadata"]["main_agent_model_id"] is None


def test_list_model_configurations_reads_the_bare_array(client, api):
    archived = payloads.model_configuration(
        id=payloads.FALLBACK_MODEL_ID,
        name="Old GPT",
        provider="openai",
        model="gpt-4o",
        is_archived=True,
        is_computer_use_model=False,
        is_system_default=False,
        organization_id=payloads.ORG_ID,
        description=None,
    )
    api.reply(httpx.Response(200, json=[payloads.model_configuration(), archived]))

    models = client.list_model_configurations()

    assert_read(api.last)
    assert api.last.url.path == "/sandbox/v1/model-configurations"
    assert api.last.url.query == b""
    assert models[0] == types.ModelConfiguration(
        id=UUID(payloads.MODEL_ID),
        name="Claude Sonnet (computer use)",
        provider="anthropic",
        model="claude-sonnet-4-5",
        description="Default computer-use agent",
        is_computer_use_model=True,
        is_archived=False,
        is_system_default=True,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        updated_at=datetime(2025, 2, 1, tzinfo=UTC),
    )
    assert (models[1].is_archived, models[1].is_computer_use_model) == (True, False)
    assert models[1].description is None


def test_create_run_sends_every_field_with_the_callers_idempotency_key(client, api):
    api.reply(
        httpx.Response(
            201,
            json=payloads.run(
                status="scheduling",
                started_at=None,
                ended_at=None,
                machine_id=None,
                main_prompt="Custom prompt",
                output_data=None,
                run_message_history=None,
            ),
        )
    )

    run = client.create_run(
        idempotency_key="launch-42-a",
        workflow_id=WORKFLOW_UUID,
        main_agent_model_id=UUID(payloads.MODEL_ID),
        main_prompt="Custom prompt",
        input_values={"portal": "https://billing.example.com", "month": "April"},
        sensitive_input_values={"password": "hunter2"},
        file_inputs=[types.FileInput(filename="list.csv", content=b"a,b\n1,2\n")],
        is_priority=True,
    )

    request = api.last
    assert_common_headers(request)
    assert (request.method, request.url.path) == ("POST", "/sandbox/v1/runs")
    assert request.headers["Idempotency-Key"] == "launch-42-a"
    assert api.body() == {
        "workflow_id": payloads.WORKFLOW_ID,
        "main_agent_model_id": payloads.MODEL_ID,
        "main_prompt": "Custom prompt",
        "input_values": {"portal": "https://billing.example.com", "month": "April"},
        "sensitive_input_values": {"password": "hunter2"},
        "file_inputs": [
            {"filename": "list.csv", "content": base64.b64encode(b"a,b\n1,2\n").decode()}
        ],
        "is_priority": True,
    }
    assert run.id == RUN_UUID
    assert run.status == "scheduling"
    assert run.machine_id is None
    assert run.started_at is None
    assert run.main_prompt == "Custom prompt"


def test_create_run_leaves_out_what_the_caller_did_not_set(client, api):
    api.reply(httpx.Response(201, json=payloads.run(status="scheduling")))

    client.create_run(idempotency_key="k-1", workflow_id=payloads.WORKFLOW_ID)

    assert api.body() == {"workflow_id": payloads.WORKFLOW_ID, "is_priority": False}


def test_create_run_refuses_to_send_without_an_idempotency_key(client, api):
    with pytest.raises(ValueError):
        client.create_run(idempotency_key="", workflow_id=payloads.WORKFLOW_ID)
    assert api.requests == []


def test_create_run_keeps_the_target_path_of_a_file(client, api):
    api.reply(httpx.Response(201, json=payloads.run()))
    client.create_run(
        idempotency_key="k",
        workflow_id=payloads.WORKFLOW_ID,
        file_inputs=[types.FileInput("a.txt", b"x", target_path="C:/in/")],
    )
    assert api.body()["file_inputs"] == [
        {"filename": "a.txt", "content": "eA==", "target_path": "C:/in/"}
    ]


def test_list_runs_sends_every_filter_and_repeats_fields(client, api):
    projected = {
        key: payloads.run()[key]
        for key in ("id", "workflow_id", "machine_id", "status", "created_at", "ended_at")
    }
    api.reply(httpx.Response(200, json=payloads.page([projected], total=250, skip=100, limit=50)))

    page = client.list_runs(
        workflow_id=WORKFLOW_UUID,
        status="running",
        created_at_from=datetime(2025, 5, 6, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        created_at_to=datetime(2025, 5, 7, 10, 0),
        search="invoice",
        fields=["started_at", "ended_at", "error"],
        sort_mode="created_at_desc",
        skip=100,
        limit=50,
    )

    request = api.last
    assert_read(request)
    assert request.url.path == "/sandbox/v1/runs"
    assert request.url.params.multi_items() == [
        ("skip", "100"),
        ("limit", "50"),
        ("workflow_id", payloads.WORKFLOW_ID),
        ("status", "running"),
        ("created_at_from", "2025-05-06T10:00:00+00:00"),
        ("created_at_to", "2025-05-07T10:00:00+00:00"),
        ("search", "invoice"),
        ("fields", "started_at"),
        ("fields", "ended_at"),
        ("fields", "error"),
        ("sort_mode", "created_at_desc"),
    ]
    assert (page.total, page.skip, page.limit) == (250, 100, 50)
    [run] = page.items
    assert run.ended_at == datetime(2025, 5, 6, 10, 3, tzinfo=UTC)
    assert run.error == []
    assert run.output_data is None
    assert run.input_values is None
    assert run.run_message_history is None


def test_list_runs_defaults_to_the_first_hundred(client, api):
    api.reply(httpx.Response(200, json=payloads.page([])))
    page = client.list_runs()
    assert dict(api.last.url.params) == {"skip": "0", "limit": "100"}
    assert page.items == []


def test_get_run_parses_a_full_run(client, api):
    api.reply(httpx.Response(200, json={**payloads.run(), "included": []}))

    run = client.get_run(payloads.RUN_ID)

    assert_read(api.last)
    assert api.last.url.path == f"/sandbox/v1/runs/{payloads.RUN_ID}"
    assert run == types.Run(
        id=RUN_UUID,
        workflow_id=WORKFLOW_UUID,
        status="success",
        created_at=datetime(2025, 5, 6, 10, 0, tzinfo=UTC),
        started_at=datetime(2025, 5, 6, 10, 0, 5, tzinfo=UTC),
        ended_at=datetime(2025, 5, 6, 10, 3, tzinfo=UTC),
        machine_id=UUID(payloads.MACHINE_ID),
        main_prompt=None,
        model_metadata=types.ModelMetadata(main_agent_model_id=UUID(payloads.MODEL_ID)),
        input_values={"portal": "https://billing.example.com", "month": "April"},
        output_data={"invoice_total": "123.45"},
        error=[],
        post_run_checks=[
            {"status": "success", "name": "Invoice downloaded", "type": "run_attachment_exists"}
        ],
        usage_metadata={"total_agentic_steps": 12, "total_cached_steps": 3},
        sensitive_input_aliases={"password": "vault_alias_1"},
        input_attachment_ids=[],
        output_attachment_ids=[payloads.ATTACHMENT_ID],
        run_message_history=[{"role": "assistant", "content": "Done."}],
        is_priority=False,
    )


def test_cancel_run_patches_the_status(client, api):
    api.reply(httpx.Response(200, json=payloads.run(status="cancelled")))

    run = client.cancel_run(RUN_UUID)

    request = api.last
    assert_common_headers(request)
    assert (request.method, request.url.path) == ("PATCH", f"/sandbox/v1/runs/{payloads.RUN_ID}")
    assert UUID(request.headers["Idempotency-Key"])
    assert api.body() == {"status": "cancelled"}
    assert run.status == "cancelled"


def test_retry_run_posts_an_empty_body(client, api):
    api.reply(httpx.Response(200, json=payloads.run(status="scheduling", ended_at=None)))

    run = client.retry_run(RUN_UUID, idempotency_key="retry-run-5-attempt-2")

    request = api.last
    assert_common_headers(request)
    assert request.method == "POST"
    assert request.url.path == f"/sandbox/v1/runs/{payloads.RUN_ID}/retry"
    assert request.headers["Idempotency-Key"] == "retry-run-5-attempt-2"
    assert api.body() == {}
    assert (run.id, run.status, run.ended_at) == (RUN_UUID, "scheduling", None)


def test_every_write_gets_its_own_key_when_the_caller_gives_none(client, api):
    api.reply(httpx.Response(200, json=payloads.run()), httpx.Response(200, json=payloads.run()))
    client.cancel_run(RUN_UUID)
    client.cancel_run(RUN_UUID)
    first, second = (r.headers["Idempotency-Key"] for r in api.requests)
    assert first != second


def test_get_run_llm_costs(client, api):
    api.reply(httpx.Response(200, json=payloads.llm_costs()))

    costs = client.get_run_llm_costs(RUN_UUID)

    assert_read(api.last)
    assert api.last.url.path == f"/sandbox/v1/runs/{payloads.RUN_ID}/llm-costs"
    assert costs.run_id == RUN_UUID
    assert costs.total_cost_usd == pytest.approx(0.0421)
    assert costs.has_unpriced is False
    assert costs.rows[0]["model"] == "claude-sonnet-4-5"


def test_llm_costs_with_an_unpriced_model_have_no_total(client, api):
    api.reply(httpx.Response(200, json=payloads.llm_costs(total_cost_usd=None, has_unpriced=True)))
    costs = client.get_run_llm_costs(RUN_UUID)
    assert (costs.total_cost_usd, costs.has_unpriced) == (None, True)


def test_list_run_attachments_filters_by_run_and_type(client, api):
    api.reply(httpx.Response(200, json=payloads.page([payloads.attachment()])))

    attachments = client.list_run_attachments(RUN_UUID, attachment_type="output")

    assert_read(api.last)
    assert api.last.url.path == "/sandbox/v1/run-attachments"
    assert dict(api.last.url.params) == {
        "run_id": payloads.RUN_ID,
        "attachment_type": "output",
        "skip": "0",
        "limit": "100",
    }
    assert attachments == [
        types.Attachment(
            id=UUID(payloads.ATTACHMENT_ID),
            run_id=RUN_UUID,
            filename="invoice.pdf",
            content_type="application/pdf",
            attachment_type="output",
            size_bytes=48213,
            created_at=datetime(2025, 5, 6, 10, 2, 59, tzinfo=UTC),
        )
    ]


def test_get_attachment_download_url(client, api):
    signed = "https://storage.example.com/invoice.pdf?token=abc"
    api.reply(httpx.Response(200, json={"url": signed, "expires_in": 60}))

    url = client.get_attachment_download_url(payloads.ATTACHMENT_ID, expires_in=60)

    assert_read(api.last)
    assert api.last.url.path == f"/sandbox/v1/run-attachments/{payloads.ATTACHMENT_ID}/download-url"
    assert dict(api.last.url.params) == {"expires_in": "60"}
    assert url == signed


def test_check_health_makes_one_cheap_authenticated_read(client, api):
    api.reply(httpx.Response(200, json=payloads.page([])))
    assert client.check_health() is None
    assert_read(api.last)
    assert api.last.url.path == "/sandbox/v1/workflows"
    assert dict(api.last.url.params) == {"limit": "1"}


def test_a_base_url_without_a_prefix_works_too(api):
    from launcher.cyberdesk import CyberdeskClient

    api.reply(httpx.Response(200, json=[]))
    client = CyberdeskClient(
        base_url="https://api.cyberdesk.io/", api_key="k", transport=httpx.MockTransport(api)
    )
    client.list_model_configurations()
    assert str(api.last.url) == "https://api.cyberdesk.io/v1/model-configurations"


def test_payloads_used_here_parse_with_the_sdks_own_models():
    """Guards the realism of the fixtures: the official SDK must accept them."""
    from openapi_client.cyberdesk_cloud_client.models import (
        ModelConfigurationResponse,
        RunAttachmentResponse,
        RunLlmCostsResponse,
        RunResponse,
        WorkflowResponse,
    )

    WorkflowResponse.from_dict(payloads.workflow())
    RunResponse.from_dict(payloads.run())
    ModelConfigurationResponse.from_dict(payloads.model_configuration())
    RunAttachmentResponse.from_dict(payloads.attachment())
    RunLlmCostsResponse.from_dict(payloads.llm_costs())
    assert json.loads(payloads.workflow()["input_schema"])["type"] == "object"


def test_reads_and_writes_carry_explicit_timeouts(client, api):
    api.reply(httpx.Response(200, json=payloads.run()), httpx.Response(200, json=payloads.run()))
    client.get_run(RUN_UUID)
    client.cancel_run(RUN_UUID)
    read, write = (request.extensions["timeout"] for request in api.requests)
    assert (read["connect"], read["read"]) == (3.0, 5.0)
    assert (write["connect"], write["read"]) == (3.0, 10.0)
