"""A run moves with time (time-machine, never sleep): scheduling → running →
[running_checks] → success | task_failed | error, or cancelled; retried in place."""

import hashlib

import pytest

from launcher.sandbox import seed
from launcher.sandbox.models import Run, Workflow
from launcher.sandbox.params import parse_datetime
from launcher.sandbox.tasks import sandbox_tick

pytestmark = pytest.mark.django_db

ELIGIBILITY_INPUTS = {
    "patient_name": "Ada Lovelace",
    "date_of_birth": "1815-12-10",
    "payer": "Aetna",
}
TIMESHEET_INPUTS = {"hours": 38, "project": "Apollo", "week_ending": "2025-03-07"}
INVOICE_INPUTS = {"invoice_filename": "inv.pdf", "invoice_total": 99.5, "line_item_count": 4}
LONG_ENOUGH = 120  # seconds: longer than any scenario, jitter included


def _create(api, workflow_id, **body):
    response = api.post("runs", {"workflow_id": str(workflow_id), **body})
    assert response.status_code == 201, response.content
    return response.json()


def _read(api, run_id):
    return api.get(f"runs/{run_id}").json()


def test_a_quick_run_schedules_runs_and_succeeds_as_time_passes(api, clock):
    run = _create(
        api,
        seed.WORKFLOW_ELIGIBILITY,
        input_values=ELIGIBILITY_INPUTS,
        sensitive_input_values={"portal_password": "hunter2"},
    )

    clock.shift(1)
    assert _read(api, run["id"])["status"] == "scheduling"

    clock.shift(2)
    running = _read(api, run["id"])
    assert running["status"] == "running"
    assert running["started_at"] is not None and running["ended_at"] is None
    assert running["machine_id"] is not None

    clock.shift(LONG_ENOUGH)
    done = _read(api, run["id"])
    assert done["status"] == "success"
    assert done["started_at"] < done["ended_at"]
    assert done["error"] is None
    assert len(done["run_message_history"]) >= 4
    assert done["usage_metadata"]["total_agentic_steps"] > 0


def test_transitions_are_stamped_with_their_planned_moment_not_the_read_time(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO)

    clock.shift(LONG_ENOUGH)
    done = _read(api, run["id"])

    # Read two minutes later, but the run took seconds.
    took = parse_datetime(done["ended_at"]) - parse_datetime(done["created_at"])
    assert took.total_seconds() < 15


def test_output_shows_the_effective_prompt_and_model_of_an_override(api, clock):
    override = "Use the new portal\nand be quick"
    run = _create(
        api,
        seed.WORKFLOW_ELIGIBILITY,
        input_values=ELIGIBILITY_INPUTS,
        sensitive_input_values={"portal_password": "hunter2"},
        main_prompt=override,
        main_agent_model_id=str(seed.MODEL_OPENAI_CUA),
    )

    clock.shift(LONG_ENOUGH)
    output = _read(api, run["id"])["output_data"]

    assert output["effective_model_id"] == str(seed.MODEL_OPENAI_CUA)
    assert output["effective_model"] == "computer-use-preview"
    assert output["prompt_sha256"] == hashlib.sha256(override.encode()).hexdigest()
    assert output["prompt_first_line"] == "Use the new portal"
    assert output["prompt_source"] == "run_override"
    assert output["inputs"] == ELIGIBILITY_INPUTS
    assert "hunter2" not in str(_read(api, run["id"]))


def test_without_overrides_the_run_uses_the_workflows_prompt_at_execution_time(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO)
    # Published after the run was created, before it started: the run sees the new prompt.
    api.patch(f"workflows/{seed.WORKFLOW_HELLO}", {"main_prompt": "Freshly published\nprompt"})

    clock.shift(LONG_ENOUGH)
    done = _read(api, run["id"])

    assert done["main_prompt"] is None
    assert done["output_data"]["prompt_first_line"] == "Freshly published"
    assert done["output_data"]["prompt_source"] == "workflow"
    # The system default model, since neither the run nor the workflow names one.
    assert done["output_data"]["effective_model_id"] == str(seed.MODEL_SONNET)


def test_a_workflow_with_checks_goes_through_running_checks(api, clock):
    run = _create(api, seed.WORKFLOW_INVOICE, input_values=INVOICE_INPUTS)
    assert run["post_run_checks"][0]["status"] == "pending"

    seen = set()
    for _ in range(80):
        clock.shift(0.5)
        current = _read(api, run["id"])
        seen.add(current["status"])
        if current["status"] == "success":
            break

    assert {"scheduling", "running", "running_checks", "success"} <= seen
    assert current["post_run_checks"][0]["status"] == "success"
    assert current["output_attachment_ids"], "the invoice workflow exports a file"


def test_a_failing_post_run_check_ends_the_run_as_task_failed(api, clock):
    run = _create(api, seed.WORKFLOW_TIMESHEET, input_values=TIMESHEET_INPUTS)

    clock.shift(LONG_ENOUGH)
    done = _read(api, run["id"])

    assert done["status"] == "task_failed"
    assert done["post_run_checks"][0]["status"] == "failed"
    assert "Confirmation number captured" in done["error"][0]


def test_a_flaky_workflow_fails_at_its_failure_rate(api, clock):
    Workflow.objects.filter(pk=seed.WORKFLOW_CRM).update(failure_rate=1.0)
    body = {
        "workflow_id": str(seed.WORKFLOW_CRM),
        "count": 5,
        "input_values": {"contact_email": "ada@example.com"},
        "sensitive_input_values": {"crm_api_key": "sk-crm-123456"},
    }
    runs = api.post("runs/bulk", body).json()["created_runs"]

    clock.shift(LONG_ENOUGH)
    statuses = {_read(api, run["id"])["status"] for run in runs}

    assert statuses <= {"error", "task_failed"}
    failed = _read(api, runs[0]["id"])
    assert failed["error"] and failed["ended_at"]


def test_a_flaky_workflow_with_no_failure_rate_always_succeeds(api, clock):
    Workflow.objects.filter(pk=seed.WORKFLOW_CRM).update(failure_rate=0.0)
    body = {
        "workflow_id": str(seed.WORKFLOW_CRM),
        "count": 4,
        "input_values": {"contact_email": "ada@example.com"},
        "sensitive_input_values": {"crm_api_key": "sk-crm-123456"},
    }
    runs = api.post("runs/bulk", body).json()["created_runs"]

    clock.shift(LONG_ENOUGH)

    assert {_read(api, run["id"])["status"] for run in runs} == {"success"}


def test_a_prompt_can_set_its_own_failure_rate(api, clock):
    # A worse prompt version fails more: "[sandbox failure_rate=…]" in the text says how much.
    hello = str(seed.WORKFLOW_HELLO)
    failing = [
        _create(api, hello, main_prompt="Say hello\n[sandbox failure_rate=1]")["id"]
        for _ in range(4)
    ]
    fine = [_create(api, hello, main_prompt="Say hello [sandbox failure_rate=0]")["id"]]

    clock.shift(LONG_ENOUGH)

    assert {_read(api, run_id)["status"] for run_id in failing} <= {"error", "task_failed"}
    assert {_read(api, run_id)["status"] for run_id in fine} == {"success"}


def test_cancelling_an_active_run_ends_it_as_cancelled(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO)
    clock.shift(3)

    response = api.patch(f"runs/{run['id']}", {"status": "cancelled"})

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["ended_at"] is not None
    clock.shift(LONG_ENOUGH)
    assert _read(api, run["id"])["status"] == "cancelled"


def test_cancelling_a_finished_run_leaves_it_finished(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO)
    clock.shift(LONG_ENOUGH)

    response = api.patch(f"runs/{run['id']}", {"status": "cancelled"})

    assert response.status_code == 200
    assert response.json()["status"] == "success"


def test_retry_sends_a_finished_run_back_to_scheduling_in_place(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO, main_prompt="Pinned prompt")
    clock.shift(LONG_ENOUGH)
    assert _read(api, run["id"])["status"] == "success"

    response = api.post(f"runs/{run['id']}/retry", {})

    retried = response.json()
    assert response.status_code == 200
    assert retried["id"] == run["id"]
    assert retried["status"] == "scheduling"
    assert retried["output_data"] is None and retried["run_message_history"] is None
    assert retried["started_at"] is None and retried["ended_at"] is None
    assert retried["main_prompt"] == "Pinned prompt"
    clock.shift(LONG_ENOUGH)
    assert _read(api, run["id"])["status"] == "success"


def test_retry_accepts_an_empty_body(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO)
    clock.shift(LONG_ENOUGH)

    response = api.post(f"runs/{run['id']}/retry")

    assert response.status_code == 200


def test_retry_of_an_active_run_is_refused(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO)

    response = api.post(f"runs/{run['id']}/retry", {})

    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)


def test_llm_costs_follow_the_model_used(api, clock):
    cheap = _create(api, seed.WORKFLOW_HELLO, main_agent_model_id=str(seed.MODEL_SONNET))
    unpriced = _create(api, seed.WORKFLOW_HELLO, main_agent_model_id=str(seed.MODEL_GEMINI_CU))
    clock.shift(LONG_ENOUGH)

    costs = api.get(f"runs/{cheap['id']}/llm-costs").json()
    no_price = api.get(f"runs/{unpriced['id']}/llm-costs").json()

    assert costs["run_id"] == cheap["id"]
    [row] = costs["rows"]
    assert row["model"] == "claude-sonnet-4-5-20250929"
    assert row["billing_platform"] == "anthropic"
    assert costs["total_cost_usd"] == pytest.approx(row["cost_usd"]) and row["cost_usd"] > 0
    assert costs["has_unpriced"] is False
    assert no_price["has_unpriced"] is True
    assert no_price["total_cost_usd"] is None


def test_a_run_nobody_reads_is_moved_by_the_driver(api, clock):
    run = _create(api, seed.WORKFLOW_HELLO)
    clock.shift(LONG_ENOUGH)

    assert Run.objects.get(pk=run["id"]).status == "scheduling"
    assert sandbox_tick() is None
    assert Run.objects.get(pk=run["id"]).status == "success"
