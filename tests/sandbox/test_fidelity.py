"""Issue 15 item 12: the sandbox answers as SDK 2.2.69 describes the real API.

- post-run-check `messages` are `list[str]` (RunPostRunCheckSnapshot.messages);
- a run's `model_metadata` echoes only the overrides sent ("Null means the run falls back to
  the workflow's model_metadata");
- POST /v1/runs/chain and POST /v1/run-attachments are not implemented here: they answer as a
  route the server lacks does upstream (404 {"detail": "Not Found"}), not 405.
"""

import pytest
from openapi_client.cyberdesk_cloud_client.models import RunResponse

from launcher.sandbox import seed
from tests.sandbox.test_lifecycle import (
    INVOICE_INPUTS,
    LONG_ENOUGH,
    TIMESHEET_INPUTS,
    _create,
    _read,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("workflow_id", "inputs"),
    [(seed.WORKFLOW_INVOICE, INVOICE_INPUTS), (seed.WORKFLOW_TIMESHEET, TIMESHEET_INPUTS)],
)
def test_post_run_check_messages_are_strings(api, clock, workflow_id, inputs):
    run = _create(api, workflow_id, input_values=inputs)
    clock.shift(LONG_ENOUGH)
    done = _read(api, run["id"])

    checks = done["post_run_checks"]
    assert checks and all(check["messages"] for check in checks if check["status"] != "cancelled")
    for check in checks:
        assert all(isinstance(message, str) for message in check["messages"]), check
    parsed = RunResponse.from_dict(done).post_run_checks
    assert all(isinstance(m, str) for check in parsed for m in check.messages)


def test_model_metadata_echoes_only_the_overrides_sent(api, clock):
    # The invoice workflow names a cache detection model (Haiku); the run overrides the main one.
    run = _create(
        api,
        seed.WORKFLOW_INVOICE,
        input_values=INVOICE_INPUTS,
        main_agent_model_id=str(seed.MODEL_SONNET),
    )
    assert run["model_metadata"] == {"main_agent_model_id": str(seed.MODEL_SONNET)}
    assert _read(api, run["id"])["model_metadata"] == run["model_metadata"]


def test_model_metadata_is_null_without_overrides(api, clock):
    run = _create(api, seed.WORKFLOW_INVOICE, input_values=INVOICE_INPUTS)
    assert run["model_metadata"] is None


def test_the_run_still_uses_the_workflows_roles_it_did_not_override(api, clock):
    run = _create(api, seed.WORKFLOW_INVOICE, input_values=INVOICE_INPUTS)
    clock.shift(LONG_ENOUGH)
    done = _read(api, run["id"])
    workflow = api.get(f"workflows/{seed.WORKFLOW_INVOICE}").json()
    expected = (workflow["model_metadata"] or {}).get("main_agent_model_id") or str(
        seed.MODEL_SONNET
    )
    assert done["output_data"]["effective_model_id"] == expected


@pytest.mark.parametrize("path", ["runs/chain", "run-attachments"])
def test_unimplemented_writes_answer_like_a_missing_route(api, path):
    response = api.post(path, {"workflow_id": str(seed.WORKFLOW_INVOICE)})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_other_methods_keep_their_routes(api):
    assert api.get("run-attachments").status_code == 200
    # /v1/runs/chain read with GET is /v1/runs/{run_id} with an id that is not a UUID.
    response = api.get("runs/chain")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "run_id"]
