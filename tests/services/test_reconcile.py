"""The reconciler: stale runs refreshed in list calls; unknown launches settled, never lost
and never sent twice."""

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from django.core.management import call_command
from django_tasks_db.models import DBTaskResult

from launcher import tasks
from launcher.cyberdesk import errors, get_client
from launcher.models import (
    Batch,
    PromptVersion,
    Run,
    RunEvent,
    RunStatus,
    Submission,
    Workflow,
    sha256_text,
)
from launcher.services import reconcile
from launcher.services.runs import run_launch, run_submit
from tests.fake_cyberdesk import FakeCyberdesk, upstream_run
from tests.launch_api import NOW, make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


@pytest.fixture
def workflow(db):
    return Workflow.objects.create(id=uuid.uuid4(), name="Invoice intake")


def accepted_run(workflow, api, *, status=RunStatus.RUNNING, upstream_status=None, **fields):
    run = Run.objects.create(
        workflow=workflow,
        prompt_mode="stored",
        cyberdesk_id=uuid.uuid4(),
        submission=Submission.ACCEPTED,
        status=status,
        **fields,
    )
    api.add(
        upstream_run(
            run.cyberdesk_id,
            workflow_id=workflow.id,
            status=upstream_status or status,
            created_at=run.created_at,
        )
    )
    return run


def unsent_run(workflow, *, submission=Submission.UNKNOWN, **fields):
    return Run.objects.create(
        workflow=workflow,
        prompt_mode="stored",
        input_values={"invoice": "INV-7"},
        submission=submission,
        status=RunStatus.PENDING,
        **fields,
    )


def creates(api) -> int:
    return api.calls["POST /v1/runs"]


# --- Refreshing runs nobody watches -------------------------------------------------------------


def test_runs_not_refreshed_for_a_minute_are_refreshed_in_one_list_call(workflow, api, clock):
    runs = [accepted_run(workflow, api, upstream_status="success") for _ in range(4)]
    Run.objects.filter(pk=runs[0].pk).update(synced_at=NOW - timedelta(seconds=61))
    Run.objects.filter(pk=runs[1].pk).update(synced_at=NOW - timedelta(seconds=30))

    report = reconcile.runs_reconcile()

    assert api.calls == {"GET /v1/runs": 1}  # one list call, not one call per run
    assert (report.refreshed, report.changed) == (3, 3)
    assert Run.objects.get(pk=runs[1].pk).status == RunStatus.RUNNING  # fresh enough
    assert Run.objects.filter(status=RunStatus.SUCCESS).count() == 3


def test_finished_runs_are_left_alone(workflow, api, clock):
    accepted_run(workflow, api, status=RunStatus.SUCCESS)

    assert reconcile.runs_reconcile().refreshed == 0
    assert not api.requests


# --- Settling launches whose outcome is unknown ----------------------------------------------


def test_a_launch_the_api_accepted_but_whose_answer_was_lost_is_found_not_duplicated(
    workflow, api, clock
):
    run = unsent_run(workflow, submission=Submission.QUEUED)
    # The first send (the launch's own, with the run's body) reached the API; only its answer
    # was lost. (The fake refuses a re-send whose body differs from it in any byte.)
    api.lose_create_answers = 1
    assert run_submit(run).submission == Submission.UNKNOWN
    assert len(api.runs) == 1
    first_upstream_id = next(iter(api.runs))

    report = reconcile.runs_reconcile()

    assert report.resubmitted == 1
    run.refresh_from_db()
    assert (run.submission, str(run.cyberdesk_id)) == (Submission.ACCEPTED, first_upstream_id)
    assert run.status == RunStatus.SCHEDULING
    assert len(api.runs) == 1  # the re-send was answered with the original run
    sent = api.requests[-1]
    assert sent.headers["Idempotency-Key"] == str(run.idempotency_key)


def test_a_launch_the_api_never_got_is_sent_once(workflow, api, clock):
    run = unsent_run(workflow)

    reconcile.runs_reconcile()
    clock.shift(timedelta(minutes=5))
    reconcile.runs_reconcile()

    run.refresh_from_db()
    assert run.submission == Submission.ACCEPTED
    assert len(api.runs) == 1
    assert creates(api) == 1
    assert run.submission_attempts == 1  # counted: the run page says how often it was sent


def test_it_sends_exactly_what_was_launched(workflow, api, clock):
    version = PromptVersion.objects.create(workflow=workflow, text="Read {invoice}.", number=1)
    run = unsent_run(workflow, prompt_version=version)
    Run.objects.filter(pk=run.pk).update(prompt_mode="pinned")

    reconcile.runs_reconcile()

    body = json.loads(api.requests[-1].content)
    assert body["main_prompt"] == "Read {invoice}."
    assert body["input_values"] == {"invoice": "INV-7"}
    assert body["workflow_id"] == str(workflow.id)


def test_a_resend_that_times_out_again_stays_unknown_and_is_never_duplicated(workflow, api, clock):
    run = unsent_run(workflow)
    api.lose_create_answers = 1

    first = reconcile.runs_reconcile()

    assert first.unsettled == 1
    assert Run.objects.get(pk=run.pk).submission == Submission.UNKNOWN
    clock.shift(timedelta(minutes=1))
    reconcile.runs_reconcile()
    run.refresh_from_db()
    assert run.submission == Submission.ACCEPTED
    assert len(api.runs) == 1  # two sends, one upstream run


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.Response(429, json={"detail": "slow down"}),
        httpx.Response(401, json={"detail": "bad key"}),
        httpx.Response(404, json={"detail": "Workflow not found"}),
    ],
    ids=["not-sent", "throttled", "auth", "not-found"],
)
def test_a_failed_resend_says_nothing_about_the_first_send(workflow, api, clock, failure):
    """The first send may have been accepted: only a conclusive answer settles the run."""
    run = unsent_run(workflow)

    def fail(request):
        if request.method == "POST":
            if isinstance(failure, Exception):
                raise failure
            return failure
        return None

    api.on_request = fail
    report = reconcile.runs_reconcile()

    assert report.unsettled == 1
    run.refresh_from_db()
    assert (run.submission, run.status) == (Submission.UNKNOWN, RunStatus.PENDING)


def test_a_refusal_of_the_values_settles_the_run_as_rejected(workflow, api, clock):
    run = unsent_run(workflow)
    refusal = httpx.Response(
        422,
        json={"detail": [{"loc": ["body", "input_values", "invoice"], "msg": "bad", "type": "x"}]},
    )
    api.on_request = lambda request: refusal if request.method == "POST" else None

    report = reconcile.runs_reconcile()

    assert report.rejected == 1
    run.refresh_from_db()
    assert (run.submission, run.status) == (Submission.REJECTED, RunStatus.REJECTED)
    assert "Nothing was started" in run.submission_error
    # The run's history says who concluded it.
    event = RunEvent.objects.get(run=run, kind="rejected")
    assert event.source == "reconciler" and "Nothing was started" in event.detail["message"]


def test_a_run_stored_but_never_sent_is_sent_after_a_grace_period(workflow, api, clock):
    run = unsent_run(workflow, submission=Submission.QUEUED)

    reconcile.runs_reconcile()
    assert creates(api) == 0  # its launch request may still be on its way
    clock.shift(reconcile.QUEUED_GRACE + timedelta(seconds=1))
    reconcile.runs_reconcile()

    assert Run.objects.get(pk=run.pk).submission == Submission.ACCEPTED
    assert creates(api) == 1


def test_queued_runs_of_a_batch_are_left_to_the_batch_worker(workflow, api, clock):
    batch = Batch.objects.create(workflow=workflow)
    run = unsent_run(workflow, submission=Submission.QUEUED, batch=batch)
    clock.shift(timedelta(hours=1))

    reconcile.runs_reconcile()

    assert Run.objects.get(pk=run.pk).submission == Submission.QUEUED
    assert creates(api) == 0


def test_two_reconcilers_at_once_send_each_run_once(workflow, api, clock):
    unsent_run(workflow)
    unsent_run(workflow)
    api.lose_create_answers = 2  # both stay unknown after the first pass

    reconcile.runs_reconcile()
    reconcile.runs_reconcile()  # the manual command, same minute

    assert creates(api) == 2


# --- Runs with secrets or files cannot be rebuilt -----------------------------------------------


def secret_run(workflow, **fields):
    return unsent_run(workflow, sensitive_input_keys=["portal_password"], **fields)


def add_upstream_twin(api, workflow, run, **fields):
    """An upstream run carrying what `run` carried (unless `fields` say otherwise)."""
    carried = {
        "input_values": run.input_values,
        "sensitive_input_aliases": {"portal_password": "vault://x"},
        **fields,
    }
    return api.add(
        upstream_run(
            workflow_id=workflow.id,
            status="running",
            created_at=run.created_at + timedelta(seconds=1),
            **carried,
        )
    )


def test_a_run_with_secrets_is_looked_for_never_resent(workflow, api, clock):
    run = secret_run(workflow)
    twin = add_upstream_twin(api, workflow, run)
    add_upstream_twin(api, workflow, run, input_values={"invoice": "INV-8"})  # another launch

    report = reconcile.runs_reconcile()

    assert report.found == 1
    assert creates(api) == 0
    run.refresh_from_db()
    assert str(run.cyberdesk_id) == twin["id"]
    assert (run.submission, run.status) == (Submission.ACCEPTED, RunStatus.RUNNING)


def test_a_run_with_secrets_the_api_never_got_is_rejected_with_a_way_forward(workflow, api, clock):
    run = secret_run(workflow)

    assert reconcile.runs_reconcile().unsettled == 1
    assert Run.objects.get(pk=run.pk).submission == Submission.UNKNOWN  # it may still appear
    clock.shift(reconcile.SECRET_LOOKUP_GRACE + timedelta(seconds=1))
    report = reconcile.runs_reconcile()

    assert report.rejected == 1
    run.refresh_from_db()
    assert (run.submission, run.status) == (Submission.REJECTED, RunStatus.REJECTED)
    assert "launch it again" in run.submission_error
    assert creates(api) == 0
    assert RunEvent.objects.get(run=run, kind="rejected").source == "reconciler"


def test_an_upstream_run_already_claimed_by_another_launch_is_not_taken_twice(workflow, api, clock):
    first, second = secret_run(workflow), secret_run(workflow)
    twin = add_upstream_twin(api, workflow, first)

    reconcile.runs_reconcile()

    owners = Run.objects.filter(cyberdesk_id=twin["id"])
    assert owners.count() == 1
    other = second if owners.get() == first else first
    assert Run.objects.get(pk=other.pk).submission == Submission.UNKNOWN


def test_a_different_model_or_prompt_is_not_the_same_launch(workflow, api, clock):
    run = secret_run(workflow)
    add_upstream_twin(api, workflow, run, main_prompt="Some other prompt")

    assert reconcile.runs_reconcile().found == 0
    assert Run.objects.get(pk=run.pk).cyberdesk_id is None


def test_a_run_older_than_the_idempotency_window_is_only_looked_for(workflow, api, clock):
    run = unsent_run(workflow)
    clock.shift(reconcile.replay_window() + timedelta(minutes=1))
    twin = add_upstream_twin(api, workflow, run, sensitive_input_aliases=None)

    reconcile.runs_reconcile()

    assert creates(api) == 0
    assert str(Run.objects.get(pk=run.pk).cyberdesk_id) == twin["id"]


# --- Scheduling ------------------------------------------------------------------------------


def test_the_command_runs_one_pass_and_reports_it(workflow, api, clock, capsys):
    unsent_run(workflow)

    call_command("reconcile_runs")

    assert '"resubmitted": 1' in capsys.readouterr().out


def test_schedule_enqueues_one_pass_now_and_a_spare_however_often_it_is_called(db, clock, capsys):
    call_command("reconcile_runs", "--schedule")
    call_command("reconcile_runs", "--schedule")

    pending = DBTaskResult.objects.order_by("run_after")
    assert {p.task_path for p in pending} == {"launcher.tasks.reconcile_runs_task"}
    assert [p.run_after for p in pending] == [NOW, NOW + tasks.RECONCILE_EVERY]
    assert "already scheduled" in capsys.readouterr().out


def test_each_pass_schedules_the_next_one(db, api, clock):
    result = tasks.reconcile_runs_task.call()

    assert result["refreshed"] == 0
    follow_ups = DBTaskResult.objects.order_by("run_after")
    assert {f.task_path for f in follow_ups} == {"launcher.tasks.reconcile_runs_task"}
    # The next pass, and a spare should this worker die before the next one schedules its own.
    assert [f.run_after for f in follow_ups] == [
        NOW + tasks.RECONCILE_EVERY,
        NOW + 2 * tasks.RECONCILE_EVERY,
    ]


def test_a_failing_pass_still_schedules_the_next_one(db, clock, monkeypatch):
    def broken():
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(tasks, "runs_reconcile", broken)

    with pytest.raises(RuntimeError):
        tasks.reconcile_runs_task.call()

    assert DBTaskResult.objects.filter(task_path=tasks.reconcile_runs_task.module_path).exists()


def test_the_re_send_is_byte_for_byte_the_first_send(catalog, api, clock):
    """The API (by its docs) refuses a key that comes back with another body; the reconciler's
    re-send must therefore be the launch's own request again, byte for byte — whatever the
    database did to the stored inputs (PostgreSQL's jsonb reorders an object's keys)."""
    api.lose_create_answers = 1
    run = run_launch(
        user=None,
        workflow=catalog.workflow,
        model_option=catalog.model,
        prompt_choice=f"version:{catalog.v1.pk}",
        # Not in jsonb's order (shorter keys first): a stored copy reads back reordered.
        input_values={"customer_id": "c-100", "age": 42, "region": "us", "tags": ["b", "a"]},
        idempotency_key=uuid.uuid4(),
    )
    assert run.submission == Submission.UNKNOWN
    clock.shift(timedelta(minutes=2))

    report = reconcile.runs_reconcile()

    first, again = api.creates
    assert again.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    assert again.content == first.content
    assert report.resubmitted == 1
    run.refresh_from_db()
    assert run.submission == Submission.ACCEPTED
    assert [str(run.cyberdesk_id)] == list(api.runs)


def test_a_key_the_api_has_with_another_body_is_looked_for_not_rejected(workflow, api, clock):
    """A 422 on the Idempotency-Key says the first send arrived (with another body): the run
    exists upstream, so it is found there — never marked rejected."""
    run = unsent_run(workflow, created_at=NOW)
    api.lose_create_answers = 1
    with pytest.raises(errors.OutcomeUnknown):  # a first send that differs in one field
        get_client().create_run(
            idempotency_key=str(run.idempotency_key),
            workflow_id=workflow.id,
            input_values={"invoice": "INV-7"},
            is_priority=True,
        )

    report = reconcile.runs_reconcile()

    assert api.calls["POST /v1/runs"] == 2  # the re-send, refused with 422
    assert (report.found, report.rejected) == (1, 0)
    run.refresh_from_db()
    assert run.submission == Submission.ACCEPTED
    assert [str(run.cyberdesk_id)] == list(api.runs)


OTHER_MODEL = uuid.UUID("00000000-0000-4000-8000-0000000000b2")


@pytest.mark.parametrize(
    "upstream_model, same",
    [
        ("ours", True),
        (OTHER_MODEL, False),  # the same inputs and prompt, another model: another launch
        (None, False),  # ran on the workflow's default model, not the override we sent
    ],
)
def test_a_launch_with_a_model_override_matches_only_that_model(
    workflow, api, clock, upstream_model, same
):
    model = make_model("Claude Sonnet")
    run = secret_run(workflow, model_option=model)
    model_id = model.pk if upstream_model == "ours" else upstream_model
    add_upstream_twin(
        api,
        workflow,
        run,
        model_metadata={"main_agent_model_id": str(model_id)} if model_id else None,
    )

    assert reconcile.runs_reconcile().found == int(same)
    assert (Run.objects.get(pk=run.pk).cyberdesk_id is not None) is same


@pytest.mark.parametrize(
    "mode, upstream_prompt, same",
    [
        ("pinned", "Read {invoice}.", True),
        ("pinned", "Read {invoice}!", False),
        ("pinned", None, False),  # the workflow's stored prompt ran, not our version
        ("stored", None, True),
        ("stored", "Read {invoice}.", False),  # an override ran; we sent none
    ],
)
def test_a_launch_matches_only_the_prompt_it_sent(
    workflow, api, clock, mode, upstream_prompt, same
):
    version = PromptVersion.objects.create(workflow=workflow, text="Read {invoice}.", number=1)
    run = secret_run(
        workflow,
        prompt_version=version if mode == "pinned" else None,
        prompt_sha256=sha256_text("Read {invoice}.") if mode == "pinned" else "",
    )
    Run.objects.filter(pk=run.pk).update(prompt_mode=mode)
    add_upstream_twin(api, workflow, run, main_prompt=upstream_prompt)

    assert reconcile.runs_reconcile().found == int(same)


@pytest.mark.parametrize(
    "differs",
    [
        {"input_values": {"invoice": "INV-8"}},
        {"sensitive_input_aliases": {"portal_password": "vault://x", "pin": "vault://y"}},
        {"sensitive_input_aliases": None},
        {"input_attachment_ids": [str(uuid.uuid4())]},  # a file we never sent
    ],
    ids=["inputs", "more-secrets", "no-secrets", "a-file"],
)
def test_the_only_candidate_carrying_something_else_is_not_the_launch(
    workflow, api, clock, differs
):
    run = secret_run(workflow)
    add_upstream_twin(api, workflow, run, **differs)

    report = reconcile.runs_reconcile()

    assert (report.found, report.unsettled) == (0, 1)
    assert Run.objects.get(pk=run.pk).cyberdesk_id is None


def _first_send_with_another_body(run, api):
    api.lose_create_answers = 1
    with pytest.raises(errors.OutcomeUnknown):
        get_client().create_run(
            idempotency_key=str(run.idempotency_key),
            workflow_id=run.workflow_id,
            input_values={"invoice": "INV-1"},  # nothing upstream will match the run
        )


def test_a_reused_key_with_nothing_to_find_stays_unknown_and_is_tried_again(workflow, api, clock):
    run = unsent_run(workflow, created_at=NOW)
    _first_send_with_another_body(run, api)

    report = reconcile.runs_reconcile()

    assert (report.found, report.rejected, report.unsettled) == (0, 0, 1)
    assert Run.objects.get(pk=run.pk).submission == Submission.UNKNOWN


def test_a_reused_key_whose_lookup_fails_stays_unknown(workflow, api, clock):
    run = unsent_run(workflow, created_at=NOW)
    _first_send_with_another_body(run, api)
    api.on_request = lambda request: (
        httpx.Response(503, json={"detail": "down"}) if request.method == "GET" else None
    )

    report = reconcile.runs_reconcile()

    assert (report.found, report.rejected, report.unsettled) == (0, 0, 1)
    assert Run.objects.get(pk=run.pk).submission == Submission.UNKNOWN


def test_a_run_settled_elsewhere_while_the_pass_works_is_left_alone(workflow, api, clock):
    """The pass lists both unknown runs; while it re-sends the first, the second is settled by
    someone else (its launch's late answer, a webhook). Its claim must then fail: the pass
    never re-sends a run that is no longer unknown."""
    first, second, third = unsent_run(workflow), unsent_run(workflow), unsent_run(workflow)
    clock.shift(timedelta(minutes=5))

    def settle_second_meanwhile(request):
        if (
            request.method == "POST"
            and not Run.objects.filter(pk=second.pk, submission=Submission.ACCEPTED).exists()
        ):
            Run.objects.filter(pk=second.pk).update(
                submission=Submission.ACCEPTED, cyberdesk_id=uuid.uuid4()
            )

    api.on_request = settle_second_meanwhile

    report = reconcile.runs_reconcile()

    sent_keys = [r.headers["Idempotency-Key"] for r in api.creates]
    # The second is skipped; the pass goes on to the third.
    assert sent_keys == [str(first.idempotency_key), str(third.idempotency_key)]
    assert report.resubmitted == 2


def test_a_run_accepted_while_its_re_send_is_refused_stays_accepted(workflow, api, clock):
    """A refusal of the re-send's values says the first send was refused too — unless the run
    was accepted meanwhile; then the acceptance stands."""
    run = unsent_run(workflow)
    clock.shift(timedelta(minutes=5))

    def accepted_meanwhile_then_refused(request):
        Run.objects.filter(pk=run.pk).update(
            submission=Submission.ACCEPTED, status=RunStatus.RUNNING, cyberdesk_id=uuid.uuid4()
        )
        return httpx.Response(
            422, json={"detail": [{"loc": ["body", "input_values"], "msg": "bad", "type": "x"}]}
        )

    api.on_request = accepted_meanwhile_then_refused

    reconcile.runs_reconcile()

    run.refresh_from_db()
    assert (run.submission, run.status) == (Submission.ACCEPTED, RunStatus.RUNNING)
    assert run.submission_error == ""


def test_rejecting_a_run_the_api_never_got_touches_that_run_only(workflow, api, clock):
    lost = secret_run(workflow)
    clock.shift(reconcile.SECRET_LOOKUP_GRACE + timedelta(seconds=1))
    # Another unknown launch, just claimed by another reconciler: not this pass's to settle.
    other = unsent_run(workflow, synced_at=NOW + reconcile.SECRET_LOOKUP_GRACE)

    report = reconcile.runs_reconcile()

    assert (report.rejected, report.unsettled) == (1, 0)
    assert Run.objects.get(pk=lost.pk).submission == Submission.REJECTED
    assert Run.objects.get(pk=other.pk).submission == Submission.UNKNOWN


def test_a_run_found_elsewhere_while_it_is_looked_for_is_not_rejected(workflow, api, clock):
    run = secret_run(workflow)
    clock.shift(reconcile.SECRET_LOOKUP_GRACE + timedelta(seconds=1))

    def accepted_meanwhile(request):  # e.g. its launch's answer arrived after all
        Run.objects.filter(pk=run.pk).update(
            submission=Submission.ACCEPTED, status=RunStatus.RUNNING, cyberdesk_id=uuid.uuid4()
        )

    api.on_request = accepted_meanwhile

    report = reconcile.runs_reconcile()

    assert (report.rejected, report.unsettled) == (0, 1)
    assert Run.objects.get(pk=run.pk).submission == Submission.ACCEPTED


def test_a_failed_lookup_leaves_the_run_unknown(workflow, api, clock):
    run = secret_run(workflow)
    clock.shift(reconcile.SECRET_LOOKUP_GRACE + timedelta(seconds=1))
    api.fail_with = 503

    assert reconcile.runs_reconcile().unsettled == 1
    assert Run.objects.get(pk=run.pk).submission == Submission.UNKNOWN


@pytest.mark.parametrize(
    "not_ours",
    [
        # Settled long ago (finished, so no refresh touches it first).
        {"submission": Submission.ACCEPTED, "cyberdesk_id": uuid.uuid4(), "status": "success"},
        {"synced_at": NOW + timedelta(minutes=5)},  # just claimed by another reconciler
    ],
    ids=["accepted", "claimed"],
)
def test_runs_not_to_settle_never_take_a_place_in_the_pass(
    workflow, api, clock, monkeypatch, not_ours
):
    """A pass settles at most SETTLE_LIMIT runs: the runs it may not settle must not fill them,
    or a waiting launch would never be sent."""
    monkeypatch.setattr(reconcile, "SETTLE_LIMIT", 1)
    older = unsent_run(workflow, submission=Submission.QUEUED)
    Run.objects.filter(pk=older.pk).update(**not_ours)
    waiting = unsent_run(workflow, submission=Submission.QUEUED)
    clock.shift(timedelta(minutes=5))

    reconcile.runs_reconcile()

    assert [r.headers["Idempotency-Key"] for r in api.creates] == [str(waiting.idempotency_key)]
