"""run_launch / run_submit / run_cancel / run_retry / run_launch_again: what is stored, what is
sent, and what happens when the API fails in each way it can."""

import uuid

import httpx
import pytest

from launcher.cyberdesk import types
from launcher.models import PromptMode, Run, RunStatus, Submission
from launcher.services.prompts import PromptChoice
from launcher.services.runs import (
    LaunchFailed,
    RunActionFailed,
    run_attachment_download_url,
    run_attachments,
    run_cancel,
    run_launch,
    run_launch_again,
    run_request,
    run_retry,
    run_submit,
)
from tests.fake_cyberdesk import serve
from tests.launch_api import V1_TEXT, V2_TEXT, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def launch(catalog, operator, *, model=None, prompt="stored", key=None, **extra):
    return run_launch(
        user=operator,
        workflow=catalog.workflow,
        model_option=model,
        prompt_choice=prompt,
        input_values=extra.pop("input_values", {"customer_id": "c-1", "age": 40}),
        sensitive_input_values=extra.pop("sensitive_input_values", None),
        file_inputs=extra.pop("file_inputs", None),
        idempotency_key=key or uuid.uuid4(),
        **extra,
    )


# --- The exact request ---------------------------------------------------------------------


def _prompt_choices(catalog):
    return {
        "stored": ("stored", None, None),
        "latest": ("latest", V2_TEXT, catalog.v2),
        "label": ("label:production", V1_TEXT, catalog.v1),
        "pinned": (f"version:{catalog.v2.pk}", V2_TEXT, catalog.v2),
    }


@pytest.mark.parametrize("model_choice", ["default", "chosen"])
@pytest.mark.parametrize("mode", ["stored", "latest", "label", "pinned"])
def test_the_request_carries_exactly_the_chosen_overrides(
    catalog, api, operator, model_choice, mode
):
    choice, text, version = _prompt_choices(catalog)[mode]
    model = catalog.model if model_choice == "chosen" else None

    run = launch(catalog, operator, model=model, prompt=choice)

    expected = {
        "workflow_id": str(catalog.workflow.pk),
        "is_priority": False,
        "input_values": {"customer_id": "c-1", "age": 40},
    }
    if model is not None:
        expected["main_agent_model_id"] = str(model.pk)
    if text is not None:
        expected["main_prompt"] = text
    assert api.create_body() == expected
    assert api.creates[0].headers["Idempotency-Key"] == str(run.idempotency_key)
    assert run.prompt_mode == {"label": PromptMode.LABEL}.get(mode, mode)
    if mode == "stored":
        # Nothing sent, but the text Launcher saw is recorded as a version (see launch again).
        assert run.prompt_version.text == catalog.workflow.main_prompt
    else:
        assert run.prompt_version == version
    assert run.model_option == model
    assert run.submission == Submission.ACCEPTED
    assert run.status == RunStatus.SCHEDULING
    assert run.cyberdesk_id is not None


def test_the_run_records_the_version_and_hash_it_resolved_to(catalog, api, operator):
    run = launch(catalog, operator, prompt="label:production")
    run.refresh_from_db()
    assert run.prompt_label == "production"
    assert run.prompt_version == catalog.v1
    assert run.prompt_sha256 == catalog.v1.sha256
    assert run.launched_by == operator


def test_secrets_are_sent_but_never_stored_and_files_only_by_name(catalog, api, operator):
    run = launch(
        catalog,
        operator,
        sensitive_input_values={"api_key": "s3cret-key"},
        file_inputs=[types.FileInput(filename="scan.pdf", content=b"%PDF")],
    )
    body = api.create_body()
    assert body["sensitive_input_values"] == {"api_key": "s3cret-key"}
    assert body["file_inputs"][0]["filename"] == "scan.pdf"
    stored = Run.objects.filter(pk=run.pk).values()[0]
    assert "s3cret-key" not in repr(stored)
    assert run.sensitive_input_keys == ["api_key"]
    assert run.file_input_names == ["scan.pdf"]


def test_the_workflow_is_never_patched_to_launch(catalog, api, operator):
    launch(catalog, operator, model=catalog.model, prompt="latest")
    assert [r.method for r in api.requests] == ["POST"]


# --- Once, and only once ----------------------------------------------------------------------


def test_the_same_token_twice_gives_one_run_and_one_call(catalog, api, operator):
    key = uuid.uuid4()
    first = launch(catalog, operator, key=key)
    second = launch(catalog, operator, key=key)
    assert first.pk == second.pk
    assert len(api.creates) == 1
    assert Run.objects.count() == 1


# "Stored and committed before the API is called" is proved from a second connection, and the
# races (same token twice at once, two retries, two reconcilers) with overlapping actors, in
# tests/services/test_races.py.


def test_a_lost_answer_keeps_the_run_as_unknown_and_never_resends_it(catalog, api, operator):
    api.create_failure = httpx.ReadTimeout("no answer")
    run = launch(catalog, operator)
    assert run.submission == Submission.UNKNOWN
    assert run.status == RunStatus.PENDING
    assert "may or may not" in run.submission_error
    assert len(api.creates) == 1


def test_the_reconciler_settles_an_unknown_run_with_the_same_key(catalog, api, operator):
    api.create_failure = httpx.ReadTimeout("no answer")
    api.create_failures_left = 1
    run = launch(catalog, operator)
    run_submit(run)
    assert run.submission == Submission.ACCEPTED
    assert {r.headers["Idempotency-Key"] for r in api.creates} == {str(run.idempotency_key)}


def test_run_submit_leaves_an_accepted_run_alone(catalog, api, operator):
    run = launch(catalog, operator)
    run_submit(run)
    assert len(api.creates) == 1


# --- Definitive failures ------------------------------------------------------------------------


def test_api_down_keeps_nothing_running_and_says_it_is_safe_to_retry(catalog, api, operator):
    api.create_failure = httpx.ConnectError("connection refused")
    with pytest.raises(LaunchFailed) as caught:
        launch(catalog, operator)
    failure = caught.value
    assert failure.safe_to_retry
    assert "safe to try again" in failure.message
    assert failure.run.status == RunStatus.REJECTED
    assert Run.objects.get().submission == Submission.REJECTED


def test_invalid_inputs_from_the_api_come_back_per_field(catalog, api, operator):
    api.create_failure = httpx.Response(
        422,
        json={
            "detail": [
                {"loc": ["body", "input_values", "age"], "msg": "too young", "type": "value_error"}
            ]
        },
    )
    with pytest.raises(LaunchFailed) as caught:
        launch(catalog, operator)
    assert caught.value.api_error.field_errors == {"input_values.age": ["too young"]}
    assert not caught.value.safe_to_retry
    assert Run.objects.get().status == RunStatus.REJECTED


def test_a_model_no_longer_offered_stores_and_sends_nothing(catalog, api, operator):
    with pytest.raises(LaunchFailed) as caught:
        launch(catalog, operator, model=catalog.disabled_model)
    assert caught.value.field == "model"
    assert caught.value.run is None
    assert not Run.objects.exists()
    assert api.requests == []


def test_a_prompt_choice_that_vanished_stores_nothing(catalog, api, operator):
    with pytest.raises(LaunchFailed) as caught:
        launch(catalog, operator, prompt=PromptChoice(mode=PromptMode.LABEL, label="staging"))
    assert caught.value.field == "prompt"
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("status", "safe"),
    [(401, False), (404, False), (429, True)],
)
def test_other_refusals_are_definitive(catalog, api, operator, settings, status, safe):
    api.create_failure = httpx.Response(status, json={"detail": "no"})
    with pytest.raises(LaunchFailed) as caught:
        launch(catalog, operator)
    assert caught.value.safe_to_retry is safe
    assert Run.objects.get().submission == Submission.REJECTED


def test_a_server_error_leaves_the_outcome_unknown(catalog, api, operator):
    api.create_failure = httpx.Response(500, json={"detail": "boom"})
    run = launch(catalog, operator)
    assert run.submission == Submission.UNKNOWN
    assert Run.objects.get().submission == Submission.UNKNOWN


def test_run_request_is_rebuilt_from_the_stored_run(catalog, api, operator):
    run = launch(catalog, operator, model=catalog.model, prompt=f"version:{catalog.v1.pk}")
    run = Run.objects.get(pk=run.pk)
    assert run_request(run) == {
        "workflow_id": catalog.workflow.pk,
        "main_agent_model_id": catalog.model.pk,
        "main_prompt": V1_TEXT,
        "input_values": {"customer_id": "c-1", "age": 40},
        "is_priority": False,
    }


# --- Cancel and retry ---------------------------------------------------------------------------


def test_cancel_asks_the_api_and_records_the_answer(catalog, api, operator):
    run = make_run(catalog.workflow, api=api)
    run_cancel(run=run, user=operator)
    assert api.calls("PATCH", f"/v1/runs/{run.cyberdesk_id}")
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_a_finished_or_unconfirmed_run_cannot_be_cancelled(catalog, api, operator):
    finished = make_run(catalog.workflow, status=RunStatus.SUCCESS)
    with pytest.raises(RunActionFailed, match="already finished"):
        run_cancel(run=finished, user=operator)
    unconfirmed = make_run(
        catalog.workflow, status=RunStatus.PENDING, cyberdesk_id=None, submission="unknown"
    )
    with pytest.raises(RunActionFailed, match="not confirmed"):
        run_cancel(run=unconfirmed, user=operator)
    assert api.requests == []


def test_retry_keeps_the_run_id_and_starts_a_new_attempt(catalog, api, operator):
    run = make_run(catalog.workflow, api=api, status=RunStatus.ERROR, output_data={"old": 1})
    api.runs[str(run.cyberdesk_id)]["status"] = "error"
    run_retry(run=run, user=operator)
    run.refresh_from_db()
    assert run.attempt == 2
    assert run.status == RunStatus.SCHEDULING
    assert run.output_data is None
    retry = api.calls("POST", f"/v1/runs/{run.cyberdesk_id}/retry")
    assert len(retry) == 1
    assert retry[0].headers["Idempotency-Key"] == f"retry-{run.idempotency_key}-2"


def test_a_refused_retry_puts_the_attempt_back(catalog, api, operator):
    run = make_run(catalog.workflow, api=api, status=RunStatus.ERROR)
    # Upstream the run is still active, so the API refuses (409).
    api.runs[str(run.cyberdesk_id)]["status"] = "running"
    with pytest.raises(RunActionFailed, match="not retried"):
        run_retry(run=run, user=operator)
    run.refresh_from_db()
    assert run.attempt == 1
    assert run.status == RunStatus.ERROR


def test_only_finished_runs_the_api_knows_can_be_retried(catalog, api, operator):
    with pytest.raises(RunActionFailed, match="finished"):
        run_retry(run=make_run(catalog.workflow), user=operator)
    rejected = make_run(
        catalog.workflow, status=RunStatus.REJECTED, cyberdesk_id=None, submission="rejected"
    )
    with pytest.raises(RunActionFailed, match="Launch again"):
        run_retry(run=rejected, user=operator)


# --- Attachments --------------------------------------------------------------------------------


def _attachment(run, filename="invoice.pdf"):
    return {
        "id": str(uuid.uuid4()),
        "run_id": str(run.cyberdesk_id),
        "filename": filename,
        "content_type": "application/pdf",
        "attachment_type": "output",
        "size_bytes": 2048,
        "storage_path": "x",
        "created_at": "2025-03-01T12:00:00Z",
    }


def test_a_finished_runs_attachments_are_fetched_once(catalog, api):
    run = make_run(catalog.workflow, api=api, status=RunStatus.SUCCESS)
    api.attachments.append(_attachment(run))
    first, error = run_attachments(run)
    second, _ = run_attachments(run)
    assert error == ""
    assert [a.filename for a in first] == [a.filename for a in second] == ["invoice.pdf"]
    assert len(api.calls("GET", "/v1/run-attachments")) == 1


def test_downloads_only_for_the_runs_own_attachments(catalog, api):
    run = make_run(catalog.workflow, api=api, status=RunStatus.SUCCESS)
    attachment = _attachment(run)
    api.attachments.append(attachment)
    url = run_attachment_download_url(run=run, attachment_id=uuid.UUID(attachment["id"]))
    assert url.startswith("https://files.test/")
    assert run_attachment_download_url(run=run, attachment_id=uuid.uuid4()) is None


# --- Launch again -------------------------------------------------------------------------------


def test_launch_again_offers_the_same_version_or_current_production(catalog, api, operator):
    run = launch(
        catalog,
        operator,
        model=catalog.model,
        prompt=f"version:{catalog.v2.pk}",
        sensitive_input_values={"api_key": "k"},
    )
    same = run_launch_again(run)
    assert same.initial == {
        "workflow": str(catalog.workflow.pk),
        "model": str(catalog.model.pk),
        "prompt": f"version:{catalog.v2.pk}",
    }
    assert same.same_description == "same version v2"
    assert same.production_description == "current production (v1)"
    assert same.input_values == {"customer_id": "c-1", "age": 40}
    assert any("$api_key" in note for note in same.notes)
    production = run_launch_again(run, prompt_from="production")
    assert production.initial["prompt"] == "label:production"


def test_launch_again_falls_back_to_the_default_model_when_it_is_gone(catalog, api, operator):
    run = launch(catalog, operator, model=catalog.model)
    catalog.model.enabled = False
    catalog.model.save()
    again = run_launch_again(Run.objects.get(pk=run.pk))
    assert again.initial["model"] == ""
    assert "no longer offered" in again.notes[0]
    # The stored prompt the run used, pinned by its recorded version.
    assert again.initial["prompt"] == f"version:{run.prompt_version_id}"


def test_a_resubmitted_form_finds_its_run_even_after_the_model_was_disabled(catalog, api, operator):
    """The "already stored?" check comes before anything else: the second submit of a form
    returns its run, whatever changed since (it is not refused, and nothing is sent)."""
    key = uuid.uuid4()
    first = launch(catalog, operator, model=catalog.model, key=key)
    catalog.model.enabled = False
    catalog.model.save()

    again = launch(catalog, operator, model=catalog.model, key=key)

    assert again.pk == first.pk
    assert len(api.creates) == 1


def test_a_retry_whose_answer_was_lost_is_found_restarted_upstream(catalog, api, operator):
    run = make_run(catalog.workflow, status=RunStatus.TASK_FAILED, api=api)
    real = api._runs

    def retry_then_lose_the_answer(request, method, parts):
        answer = real(request, method, parts)
        if parts[1:] == ["retry"]:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return answer

    api._runs = retry_then_lose_the_answer

    run_retry(run=run, user=operator)

    run.refresh_from_db()
    assert (run.attempt, run.status) == (2, RunStatus.SCHEDULING)
    assert len(api.calls("POST", f"/v1/runs/{run.cyberdesk_id}/retry")) == 1


def test_a_refused_retry_gives_back_this_runs_attempt_only(catalog, api, operator):
    run = make_run(catalog.workflow, status=RunStatus.TASK_FAILED, api=api)
    other = make_run(catalog.workflow, status=RunStatus.TASK_FAILED, api=api, attempt=2)
    api.fail_with = 409

    with pytest.raises(RunActionFailed):
        run_retry(run=run, user=operator)

    assert run.attempt == 1
    assert Run.objects.get(pk=run.pk).attempt == 1
    assert Run.objects.get(pk=other.pk).attempt == 2


def test_a_lost_answer_marks_only_its_own_run_unknown(catalog, api, operator):
    waiting = make_run(catalog.workflow, status=RunStatus.PENDING, submission=Submission.QUEUED)
    api.create_failure = httpx.ReadTimeout("no answer")

    run = launch(catalog, operator)

    assert run.submission == Submission.UNKNOWN
    assert Run.objects.get(pk=waiting.pk).submission == Submission.QUEUED


def test_a_lost_answer_never_undoes_an_acceptance_recorded_meanwhile(catalog, api, operator):
    def accepted_meanwhile_then_lost(request):  # e.g. the reconciler settled it first
        Run.objects.filter(idempotency_key=request.headers["Idempotency-Key"]).update(
            submission=Submission.ACCEPTED, cyberdesk_id=uuid.uuid4()
        )
        raise httpx.ReadTimeout("no answer", request=request)

    api.on_request = accepted_meanwhile_then_lost

    run = launch(catalog, operator)

    assert Run.objects.get(pk=run.pk).submission == Submission.ACCEPTED
