"""The real client against the real sandbox, over HTTP (live_server): every method Launcher
uses, and the errors it must understand, without any mocking in between."""

import base64
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from launcher.cyberdesk import close_client, errors, get_client, types
from launcher.sandbox.seed import (
    MODEL_SONNET,
    WORKFLOW_ELIGIBILITY,
    WORKFLOW_INVOICE,
    seed_demo_data,
)

pytestmark = pytest.mark.django_db(transaction=True)

ELIGIBILITY_INPUTS = {
    "patient_name": "Ada Lovelace",
    "date_of_birth": "1990-12-10",
    "payer": "Aetna",
}


@pytest.fixture
def client(live_server, settings):
    seed_demo_data()
    settings.CYBERDESK_BASE_URL = live_server.url + "/sandbox"
    settings.CYBERDESK_API_KEY = settings.SANDBOX_API_KEY
    # Deliveries would go to a server that is not running here; keep them out of the way.
    settings.SANDBOX_WEBHOOK_URL = live_server.url + "/webhooks/cyberdesk/"
    yield get_client()
    close_client()  # let the server's keep-alive thread (and its DB connection) end


def launch(client, **overrides):
    fields = {
        "idempotency_key": str(uuid.uuid4()),
        "workflow_id": WORKFLOW_ELIGIBILITY,
        "input_values": ELIGIBILITY_INPUTS,
        "sensitive_input_values": {"portal_password": "s3cret-pass"},
    }
    fields.update(overrides)
    return client.create_run(**fields)


def test_workflows_list_get_and_update(client):
    workflows = client.list_workflows()
    eligibility = next(w for w in workflows if w.id == WORKFLOW_ELIGIBILITY)
    assert eligibility.name == "Check insurance eligibility"
    assert eligibility.input_schema["properties"]["payer"]["enum"][0] == "Aetna"
    assert "healthcare" in {tag.lower() for tag in eligibility.tags}

    invoice = client.get_workflow(WORKFLOW_INVOICE)
    assert invoice.has_post_run_checks is True
    assert invoice.model_metadata.main_agent_model_id is not None

    renamed = client.update_workflow(WORKFLOW_ELIGIBILITY, name="Eligibility (renamed)")
    assert renamed.name == "Eligibility (renamed)"
    assert renamed.main_prompt == eligibility.main_prompt
    assert client.get_workflow(WORKFLOW_ELIGIBILITY).name == "Eligibility (renamed)"


def test_model_configurations(client):
    models = client.list_model_configurations()
    sonnet = next(m for m in models if m.id == MODEL_SONNET)
    assert sonnet.is_computer_use_model is True
    assert sonnet.provider == "anthropic"


def test_a_run_is_created_once_per_key_and_can_be_read_listed_cancelled_and_retried(client):
    key = str(uuid.uuid4())
    run = launch(
        client,
        idempotency_key=key,
        main_prompt="Say hi to {patient_name}",
        main_agent_model_id=MODEL_SONNET,
        is_priority=True,
    )
    assert run.status == "scheduling"
    assert run.main_prompt == "Say hi to {patient_name}"
    assert run.model_metadata.main_agent_model_id == MODEL_SONNET
    assert "portal_password" in (run.sensitive_input_aliases or {})

    again = launch(
        client,
        idempotency_key=key,
        main_prompt="Say hi to {patient_name}",
        main_agent_model_id=MODEL_SONNET,
        is_priority=True,
    )
    assert again.id == run.id

    assert client.get_run(run.id).workflow_id == WORKFLOW_ELIGIBILITY
    page = client.list_runs(workflow_id=WORKFLOW_ELIGIBILITY, fields=["started_at", "ended_at"])
    assert [item.id for item in page.items] == [run.id]
    assert page.total == 1
    assert page.items[0].run_message_history is None

    with pytest.raises((errors.Conflict, errors.InvalidRequest)):
        client.retry_run(run.id)  # still active

    assert client.cancel_run(run.id).status == "cancelled"
    retried = client.retry_run(run.id)
    assert (retried.id, retried.status) == (run.id, "scheduling")


def test_a_finished_run_has_costs_and_attachments(client):
    run = client.create_run(
        idempotency_key=str(uuid.uuid4()),
        workflow_id=WORKFLOW_INVOICE,
        input_values={"invoice_filename": "inv.pdf", "invoice_total": 12.5, "line_item_count": 2},
        file_inputs=[types.FileInput(filename="inv.pdf", content=b"%PDF-1.4 demo")],
    )
    inputs = client.list_run_attachments(run.id, attachment_type="input")
    assert [(a.filename, a.size_bytes) for a in inputs] == [("inv.pdf", len(b"%PDF-1.4 demo"))]
    url = client.get_attachment_download_url(inputs[0].id, expires_in=60)
    assert url.startswith("http")

    with time_machine.travel(timezone.now() + timedelta(hours=1), tick=False):
        finished = client.get_run(run.id)
        assert finished.ended_at is not None
        costs = client.get_run_llm_costs(run.id)
    assert costs.run_id == run.id
    assert isinstance(costs.rows, list)


def test_invalid_inputs_come_back_per_field(client):
    with pytest.raises(errors.InvalidRequest) as caught:
        launch(client, input_values={**ELIGIBILITY_INPUTS, "payer": "Nobody"})
    assert "input_values.payer" in caught.value.field_errors
    assert "s3cret-pass" not in str(caught.value)


def test_an_unknown_model_is_a_readable_400(client):
    with pytest.raises(errors.InvalidRequest) as caught:
        launch(client, main_agent_model_id=uuid.uuid4())
    assert caught.value.status_code == 400
    assert caught.value.messages


def test_unknown_ids_are_not_found(client):
    with pytest.raises(errors.NotFound):
        client.get_run(uuid.uuid4())
    with pytest.raises(errors.NotFound):
        client.get_workflow(uuid.uuid4())


def test_a_wrong_key_is_an_auth_error(client, settings):
    client.close()
    settings.CYBERDESK_API_KEY = "sk_wrong"
    with pytest.raises(errors.AuthError):
        get_client().list_model_configurations()


def test_file_contents_travel_base64_encoded(client):
    content = bytes(range(256))
    run = client.create_run(
        idempotency_key=str(uuid.uuid4()),
        workflow_id=WORKFLOW_INVOICE,
        input_values={"invoice_filename": "b.bin", "invoice_total": 1, "line_item_count": 1},
        file_inputs=[types.FileInput(filename="b.bin", content=content)],
    )
    [attachment] = client.list_run_attachments(run.id, attachment_type="input")
    assert attachment.size_bytes == len(content) == len(base64.b64decode(base64.b64encode(content)))
