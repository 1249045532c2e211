"""POST /v1/runs and /v1/runs/bulk: validation like the real API, overrides echoed, secrets
never stored."""

import base64
import json
import uuid

import pytest

from launcher.sandbox import seed
from launcher.sandbox.models import IdempotencyRecord, Run, RunAttachment, WebhookDelivery

pytestmark = pytest.mark.django_db

ELIGIBILITY_INPUTS = {
    "patient_name": "Ada Lovelace",
    "date_of_birth": "1815-12-10",
    "payer": "Aetna",
}


def _create(api, **body):
    return api.post("runs", {"workflow_id": str(seed.WORKFLOW_ELIGIBILITY), **body})


def _locs(response):
    return [problem["loc"] for problem in response.json()["detail"]]


def test_it_creates_a_scheduling_run_with_every_key_of_the_run_object(api):
    response = _create(api, input_values=ELIGIBILITY_INPUTS)

    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "scheduling"
    assert "machine_id" in run and run["machine_id"] is None
    assert run["main_prompt"] is None
    assert run["model_metadata"] is None
    assert run["started_at"] is None and run["ended_at"] is None
    assert Run.objects.filter(pk=run["id"]).exists()


def test_it_echoes_a_prompt_override_and_only_the_model_override_sent(api):
    response = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_INVOICE),
            "main_prompt": "Reconcile carefully\nthen export",
            "main_agent_model_id": str(seed.MODEL_SONNET),
            "input_values": {
                "invoice_filename": "inv.pdf",
                "invoice_total": 12.5,
                "line_item_count": 3,
            },
        },
    )

    run = response.json()
    assert run["main_prompt"] == "Reconcile carefully\nthen export"
    # Only the override sent (as the API does, SDK 2.2.69): the workflow's other roles
    # (its cache detection model, Haiku) still apply at execution, but are not echoed.
    assert run["model_metadata"] == {"main_agent_model_id": str(seed.MODEL_SONNET)}


def test_an_unknown_workflow_is_a_404(api):
    response = api.post("runs", {"workflow_id": str(uuid.uuid4())})

    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)


def test_an_unknown_model_id_is_a_400(api):
    response = _create(api, input_values=ELIGIBILITY_INPUTS, main_agent_model_id=str(uuid.uuid4()))

    assert response.status_code == 400
    assert "not found" in response.json()["detail"]
    assert not Run.objects.exists()


def test_an_unknown_model_in_model_metadata_is_a_400(api):
    response = _create(
        api,
        input_values=ELIGIBILITY_INPUTS,
        model_metadata={"fallback_model_1_id": str(uuid.uuid4())},
    )

    assert response.status_code == 400


def test_two_different_main_agent_models_are_a_400(api):
    response = _create(
        api,
        input_values=ELIGIBILITY_INPUTS,
        main_agent_model_id=str(seed.MODEL_SONNET),
        model_metadata={"main_agent_model_id": str(seed.MODEL_OPUS)},
    )

    assert response.status_code == 400
    assert "disagree" in response.json()["detail"]


def test_the_same_main_agent_model_in_both_places_is_fine(api):
    response = _create(
        api,
        input_values=ELIGIBILITY_INPUTS,
        main_agent_model_id=str(seed.MODEL_OPUS),
        model_metadata={"main_agent_model_id": str(seed.MODEL_OPUS)},
    )

    assert response.status_code == 201


@pytest.mark.parametrize("prompt", ["", "   "])
def test_an_empty_prompt_override_is_a_422(api, prompt):
    response = _create(api, input_values=ELIGIBILITY_INPUTS, main_prompt=prompt)

    assert response.status_code == 422
    assert _locs(response) == [["body", "main_prompt"]]


def test_type_errors_come_back_together_in_the_list_shape(api):
    response = api.post(
        "runs",
        {
            "workflow_id": "nope",
            "input_values": [1],
            "is_priority": "very",
            "main_agent_model_id": 42,
        },
    )

    assert response.status_code == 422
    assert sorted(_locs(response)) == sorted(
        [
            ["body", "workflow_id"],
            ["body", "input_values"],
            ["body", "is_priority"],
            ["body", "main_agent_model_id"],
        ]
    )
    for problem in response.json()["detail"]:
        assert {"loc", "msg", "type"} <= set(problem)


def test_a_missing_workflow_id_is_a_422(api):
    response = api.post("runs", {})

    assert response.status_code == 422
    assert response.json()["detail"][0] == {
        "type": "missing",
        "loc": ["body", "workflow_id"],
        "msg": "Field required",
    }


def test_inputs_are_checked_against_the_workflows_schema_naming_each_bad_field(api):
    response = _create(
        api,
        input_values={"patient_name": "", "date_of_birth": "10/12/1815", "payer": "Acme"},
    )

    assert response.status_code == 422
    assert sorted(_locs(response)) == [
        ["body", "input_values", "date_of_birth"],
        ["body", "input_values", "patient_name"],
        ["body", "input_values", "payer"],
    ]


def test_a_missing_required_input_is_named(api):
    response = _create(api, input_values={"patient_name": "Ada"})

    assert sorted(_locs(response)) == [
        ["body", "input_values", "date_of_birth"],
        ["body", "input_values", "payer"],
    ]


def test_sensitive_inputs_are_validated_under_their_dollar_name_without_echoing_them(api):
    response = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_CRM),
            "input_values": {"contact_email": "ada@example.com"},
            "sensitive_input_values": {"crm_api_key": "short"},
        },
    )

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "sensitive_input_values", "crm_api_key"]
    assert "short" not in json.dumps(response.json())


def test_a_rule_on_the_whole_inputs_never_echoes_a_sensitive_value(api):
    """jsonschema's message for a rule on the whole object quotes the object, secrets included;
    so would the item's `input`."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "$pin": {"type": "string"}},
        "anyOf": [{"required": ["email"]}, {"required": ["phone"]}],
    }
    patched = api.patch(f"workflows/{seed.WORKFLOW_HELLO}", {"input_schema": json.dumps(schema)})
    assert patched.status_code == 200

    response = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_HELLO),
            "input_values": {"name": "Ada"},
            "sensitive_input_values": {"pin": "correct-horse-battery"},
        },
    )

    assert response.status_code == 422
    assert response.json()["detail"]
    assert "correct-horse-battery" not in response.content.decode()


def test_a_missing_required_sensitive_input_is_named_without_the_dollar(api):
    response = api.post(
        "runs",
        {"workflow_id": str(seed.WORKFLOW_CRM), "input_values": {"contact_email": "a@b.co"}},
    )

    assert _locs(response) == [["body", "sensitive_input_values", "crm_api_key"]]


def test_sensitive_values_are_never_stored_only_aliases(api):
    secret = "correct-horse-battery-staple-42"
    response = _create(
        api,
        input_values=ELIGIBILITY_INPUTS,
        sensitive_input_values={"portal_password": secret},
        **{},
    )

    run = response.json()
    assert set(run["sensitive_input_aliases"]) == {"portal_password"}
    assert secret not in json.dumps(run)
    stored = Run.objects.values().get(pk=run["id"])
    assert secret not in json.dumps(stored, default=str)
    assert secret not in json.dumps(list(IdempotencyRecord.objects.values()), default=str)
    assert secret not in json.dumps(list(WebhookDelivery.objects.values()), default=str)


def test_file_inputs_become_input_attachments(api):
    content = b"%PDF-1.4 sandbox"
    response = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_INVOICE),
            "input_values": {
                "invoice_filename": "inv.pdf",
                "invoice_total": 1,
                "line_item_count": 1,
            },
            "file_inputs": [{"filename": "inv.pdf", "content": base64.b64encode(content).decode()}],
        },
    )

    [attachment_id] = response.json()["input_attachment_ids"]
    attachment = RunAttachment.objects.get(pk=attachment_id)
    assert bytes(attachment.content) == content
    assert attachment.target_path == "~/CyberdeskTransfers/"


def test_a_file_input_that_is_not_base64_is_a_422(api):
    response = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_HELLO),
            "file_inputs": [{"filename": "a.txt", "content": "not base64!!"}],
        },
    )

    assert _locs(response) == [["body", "file_inputs", 0, "content"]]


def test_bulk_create_makes_identical_runs_without_overrides(api):
    response = api.post(
        "runs/bulk",
        {
            "workflow_id": str(seed.WORKFLOW_ELIGIBILITY),
            "count": 3,
            "input_values": ELIGIBILITY_INPUTS,
            "main_prompt": "ignored by bulk",
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert body["failed_count"] == 0 and body["errors"] == []
    assert len(body["created_runs"]) == 3
    assert {run["main_prompt"] for run in body["created_runs"]} == {None}
    assert Run.objects.count() == 3


@pytest.mark.parametrize("count", [0, 1001, "3"])
def test_bulk_create_refuses_a_count_out_of_range(api, count):
    response = api.post("runs/bulk", {"workflow_id": str(seed.WORKFLOW_HELLO), "count": count})

    assert response.status_code == 422
    assert _locs(response) == [["body", "count"]]


def test_bulk_create_checks_inputs_like_a_single_create(api):
    response = api.post(
        "runs/bulk",
        {"workflow_id": str(seed.WORKFLOW_ELIGIBILITY), "count": 2, "input_values": {}},
    )

    assert response.status_code == 422
    assert not Run.objects.exists()
