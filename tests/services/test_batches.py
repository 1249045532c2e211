"""Batches: reading and checking rows (CSV, JSON Lines, N copies), the plan (rows × models ×
prompts, stored before anything is sent), sending (bounded, throttled, crash-safe) and the
batch actions (cancel the rest, retry the failed)."""

import json
import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from launcher import tasks
from launcher.models import (
    Batch,
    BatchChunk,
    PromptMode,
    PromptVersionRollup,
    Run,
    RunEvent,
    RunStatus,
    Submission,
)
from launcher.services.batches import (
    CANCELLED_BEFORE_SENDING,
    CLAIM_TTL,
    NEEDS_SECRETS,
    BatchRefused,
    BatchRow,
    batch_blocker,
    batch_cancel_rest,
    batch_cancel_upstream,
    batch_create,
    batch_inputs_check,
    batch_prompt_problems,
    batch_retry_failed,
    batch_retry_upstream,
    batch_rows_check,
    batch_submit,
    send,
)
from launcher.services.batches.chunks import CHUNK_LEASE, CHUNK_RENEW_EVERY, chunk_claim
from launcher.services.prompt_rollups import prompt_rollups_rebuild
from launcher.services.prompts import prompt_resolve_choice
from tests.fake_cyberdesk import FakeCyberdesk, serve
from tests.launch_api import NOW, Catalog, make_model, make_run, make_workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


def prompts(catalog, *choices):
    return [
        prompt_resolve_choice(workflow=catalog.workflow, choice=c) for c in choices or ["stored"]
    ]


def check(catalog, text, *choices, input_format=""):
    return batch_rows_check(
        workflow=catalog.workflow,
        prompts=prompts(catalog, *choices),
        text=text,
        input_format=input_format,
    )


def plan(catalog, operator, rows=3, *, models=(None,), choices=("stored",), token=None):
    checked = check(
        catalog, "customer_id,age\n" + "".join(f"c-{n:03d},{30 + n}\n" for n in range(rows))
    )
    assert checked.ok, checked.file_errors
    return batch_create(
        user=operator,
        workflow=catalog.workflow,
        models=list(models),
        prompts=prompts(catalog, *choices),
        rows=checked.rows,
        token=token or uuid.uuid4(),
    )


class Clock:
    """A monotonic clock the sender's waits move forward, so no test really sleeps."""

    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


def submit(batch, clock=None, **kwargs):
    clock = clock or Clock()
    kwargs.setdefault("concurrency", 1)
    return batch_submit(batch=batch, sleep=clock.sleep, clock=clock, **kwargs)


def creates(api) -> list[httpx.Request]:
    return [r for r in api.requests if r.method == "POST" and r.url.path.endswith("/v1/runs")]


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_values_are_coerced_to_their_schema_types(catalog):
    checked = check(
        catalog,
        'customer_id,age,notify,region,tags\nc-100,42,false,us,"vip\nnew"\nc-101,19,,eu,\n',
    )

    assert checked.file_errors == [] and checked.bad_rows == []
    first, second = checked.rows
    assert first.values == {
        "customer_id": "c-100",
        "age": 42,
        "notify": False,
        "region": "us",
        "tags": ["vip", "new"],
    }
    assert (first.line, second.line) == (2, 4)  # the quoted cell spans lines 2–3
    assert second.values == {"customer_id": "c-101", "age": 19, "region": "eu"}


def test_csv_bad_rows_carry_their_line_numbers_and_messages(catalog):
    checked = check(
        catalog,
        "customer_id,age\nc-100,42\nc-101,old\n\nx,30\nc-103,200\nc-104\n",
    )

    assert [row.values["customer_id"] for row in checked.rows] == ["c-100"]
    bad = {row.line: row.messages for row in checked.bad_rows}
    assert bad == {
        3: ["age: Enter a whole number."],
        5: ["customer_id: Must be at least 3 characters long."],
        6: ["age: Must be at most 120."],
        7: ["has 1 values; the header has 2 columns.", "age: This field is required."],
    }


@pytest.mark.parametrize("text", ["", "   \n\n", "\ufeff"])
def test_an_empty_file_is_refused(catalog, text):
    checked = check(catalog, text)

    assert not checked.ok
    assert checked.file_errors == ["The file is empty: add a header line and one row per run."]


def test_a_header_without_rows_is_refused(catalog):
    assert check(catalog, "customer_id,age\n").file_errors == ["The file has a header but no rows."]


def test_a_header_with_unknown_keys_names_them(catalog):
    checked = check(catalog, "customer_id,age,colour,size\nc-100,42,red,xl\n")

    assert checked.rows == []
    assert len(checked.file_errors) == 1
    assert checked.file_errors[0].startswith(
        "Line 1 (the header): Unknown input keys: colour, size."
    )


def test_a_header_naming_a_secret_is_refused_with_the_reason(catalog):
    checked = check(catalog, "customer_id,age,$api_key\nc-100,42,s3cret\n")

    assert checked.rows == []
    assert "Sensitive inputs cannot come from a batch ($api_key)" in checked.file_errors[0]
    assert "s3cret" not in " ".join(checked.file_errors)


def test_a_header_with_repeated_or_blank_columns_is_refused(catalog):
    checked = check(catalog, "customer_id,age,age,\nc-100,42,43,\n")

    assert "Line 1 (the header): a column has no name." in checked.file_errors
    assert "Line 1 (the header): repeated columns: age." in checked.file_errors


def test_too_many_rows_are_refused(catalog, settings):
    settings.BATCH_MAX_RUNS = 3
    text = "customer_id,age\n" + "c-100,42\n" * 4

    checked = check(catalog, text)

    assert checked.rows == []
    assert checked.file_errors == ["The file has more than 3 rows; a batch is at most 3 runs."]
    assert check(catalog, "customer_id,age\n" + "c-100,42\n" * 3).ok


def test_rows_must_fill_the_variables_of_every_chosen_prompt(catalog):
    catalog.workflow.main_prompt = "Stored: look up {customer_id} for {ticket}."
    catalog.workflow.save()

    checked = check(catalog, "customer_id,age,ticket\nc-100,42,T-1\nc-101,43,\n")

    assert [row.values.get("ticket") for row in checked.rows] == ["T-1"]
    assert checked.bad_rows[0].line == 3
    assert checked.bad_rows[0].messages == ["ticket: the prompt uses {ticket}; give it a value."]


# --- JSON Lines ---------------------------------------------------------------------------------


def test_json_lines_are_read_one_object_per_line_skipping_blank_lines(catalog):
    text = (
        '{"customer_id": "c-100", "age": 42, "tags": ["a"]}\n'
        "\n"
        '{"customer_id": "c-101", "age": "42"}\n'
        "[1, 2]\n"
        "{not json\n"
        '{"customer_id": "c-104", "age": 50, "colour": "red"}\n'
    )

    checked = check(catalog, text)

    assert [row.values for row in checked.rows] == [
        {"customer_id": "c-100", "age": 42, "tags": ["a"]}
    ]
    bad = {row.line: row.messages for row in checked.bad_rows}
    assert bad[3] == ["age: Must be of type integer."]
    assert bad[4] == ['must be a JSON object: {"key": value, …}.']
    assert bad[5][0].startswith("not valid JSON")
    assert bad[6][0].startswith("Unknown input keys: colour.")


def test_json_lines_are_recognised_without_being_told(catalog):
    checked = check(catalog, '{"customer_id": "c-100", "age": 42}\n')

    assert checked.ok and checked.rows[0].line == 1


def test_json_lines_may_not_carry_secrets(catalog):
    checked = check(catalog, '{"customer_id": "c-100", "age": 42, "$api_key": "k-123"}\n')

    assert checked.rows == []
    assert "Sensitive inputs cannot come from a batch ($api_key)" in checked.bad_rows[0].messages[0]
    assert "k-123" not in json.dumps(checked.bad_rows[0].messages)


@pytest.mark.parametrize(
    "text",
    [
        "customer_id,age\nc-1\x00x,42\n",
        '{"customer_id": "c-1\\u0000x", "age": 42}\n',
        '{"customer_id": "c-100", "age": 42, "tags": ["a\\u0000"]}\n',
    ],
)
def test_a_row_with_a_nul_character_is_refused(catalog, text):
    """PostgreSQL cannot store U+0000 in text or jsonb: such a row would fail the plan."""
    checked = check(catalog, text)

    assert checked.rows == []
    assert any("NUL" in message for message in checked.bad_rows[0].messages)


def test_a_count_with_a_nul_character_is_refused(catalog):
    checked = batch_inputs_check(
        workflow=catalog.workflow,
        prompts=prompts(catalog),
        inputs='{"customer_id": "c-1\\u0000", "age": 42}',
        count=2,
    )

    assert checked.rows == []
    assert any("NUL" in message for message in checked.file_errors)


# --- N copies -----------------------------------------------------------------------------------


def test_a_count_gives_that_many_identical_rows(catalog):
    checked = batch_inputs_check(
        workflow=catalog.workflow,
        prompts=prompts(catalog),
        inputs='{"customer_id": "c-100", "age": 42}',
        count=3,
    )

    assert checked.ok
    assert [row.number for row in checked.rows] == [1, 2, 3]
    assert {json.dumps(row.values) for row in checked.rows} == {
        '{"customer_id": "c-100", "age": 42}'
    }


def test_a_count_with_bad_inputs_says_what_is_wrong(catalog):
    checked = batch_inputs_check(
        workflow=catalog.workflow, prompts=prompts(catalog), inputs='{"age": 12}', count=2
    )

    assert checked.rows == []
    assert "Inputs: customer_id: This field is required." in checked.file_errors
    assert "Inputs: age: Must be at least 18." in checked.file_errors


# --- What a batch cannot carry ------------------------------------------------------------------


def test_a_workflow_requiring_a_secret_cannot_be_batched(db):
    workflow = make_workflow(
        input_schema={
            "type": "object",
            "required": ["$password"],
            "properties": {"$password": {"type": "string"}},
        }
    )

    assert batch_blocker(workflow) == NEEDS_SECRETS
    with pytest.raises(BatchRefused, match="needs secrets"):
        batch_create(
            user=None,
            workflow=workflow,
            models=[None],
            prompts=[prompt_resolve_choice(workflow=workflow, choice="stored")],
            rows=[BatchRow(number=1, line=None, values={})],
            token=uuid.uuid4(),
        )


def test_a_prompt_filling_secrets_is_named_as_unusable(catalog):
    v2 = prompt_resolve_choice(workflow=catalog.workflow, choice=f"version:{catalog.v2.pk}")

    assert batch_prompt_problems(v2, catalog.workflow) == [
        "v2 uses sensitive variables ({$api_key}); a batch cannot fill them."
    ]
    assert batch_prompt_problems(prompts(catalog)[0], catalog.workflow) == []


# --- The plan -----------------------------------------------------------------------------------


def test_the_plan_is_rows_times_models_times_prompts_stored_before_sending(
    catalog, operator, django_capture_on_commit_callbacks
):
    other = make_model("GPT Operator")
    production = f"label:{catalog.production.name}"

    with django_capture_on_commit_callbacks(execute=True):
        batch = plan(
            catalog,
            operator,
            rows=2,
            models=(catalog.model, other),
            choices=("stored", production),
        )

    runs = list(batch.runs.order_by("batch_row", "model_option__name", "prompt_mode"))
    assert batch.is_matrix and batch.state == Batch.State.SUBMITTING
    assert len(runs) == 8
    assert {(r.batch_row, r.model_option.name, r.prompt_mode) for r in runs} == {
        (row, model, mode)
        for row in (1, 2)
        for model in ("Claude Sonnet", "GPT Operator")
        for mode in (PromptMode.STORED, PromptMode.LABEL)
    }
    labelled = [r for r in runs if r.prompt_mode == PromptMode.LABEL]
    assert {(r.prompt_label, r.prompt_version_id, r.prompt_sha256) for r in labelled} == {
        ("production", catalog.v1.pk, catalog.v1.sha256)
    }
    assert {r.submission for r in runs} == {Submission.QUEUED}
    assert {r.status for r in runs} == {RunStatus.PENDING}
    assert len({r.idempotency_key for r in runs}) == 8
    assert {r.launched_by_id for r in runs} == {operator.pk}
    assert [r.input_values for r in runs if r.batch_row == 1][0] == {
        "customer_id": "c-000",
        "age": 30,
    }
    task = DBTaskResult.objects.get()  # enqueued once the plan committed
    assert task.task_path == "launcher.tasks.batch_submit_task"
    assert task.args_kwargs["args"] == [batch.pk]


def test_the_same_form_posted_twice_plans_one_batch(catalog, operator):
    token = uuid.uuid4()

    first = plan(catalog, operator, token=token)
    second = plan(catalog, operator, token=token)

    assert first.pk == second.pk
    assert Batch.objects.count() == 1 and Run.objects.count() == 3


def test_a_plan_over_the_limit_is_refused(catalog, operator, settings):
    settings.BATCH_MAX_RUNS = 5

    with pytest.raises(BatchRefused, match="That is 6 runs; a batch is at most 5"):
        plan(catalog, operator, rows=3, models=(None, catalog.model))
    assert Run.objects.count() == 0


def test_a_model_no_longer_offered_is_refused(catalog, operator):
    with pytest.raises(BatchRefused, match="no longer offered"):
        plan(catalog, operator, models=(catalog.disabled_model,))


# --- Sending ------------------------------------------------------------------------------------


def test_every_queued_run_is_sent_with_its_own_key_and_choices(catalog, operator, api):
    batch = plan(catalog, operator, rows=2, models=(None, catalog.model), choices=("latest",))

    report = submit(batch)

    assert report.accepted == 4 and report.remaining == 0
    runs = list(batch.runs.all())
    assert {r.submission for r in runs} == {Submission.ACCEPTED}
    assert {r.status for r in runs} == {RunStatus.SCHEDULING}
    sent_keys = {r.headers["Idempotency-Key"] for r in creates(api)}
    assert sent_keys == {str(r.idempotency_key) for r in runs}
    bodies = [json.loads(r.content) for r in creates(api)]
    assert {b.get("main_agent_model_id") for b in bodies} == {None, str(catalog.model.pk)}
    assert {b["main_prompt"] for b in bodies} == {catalog.v2.text}
    batch.refresh_from_db()
    assert batch.state == Batch.State.SUBMITTED


def test_a_batch_counts_its_runs_on_their_versions_counters_as_planned_and_sent(
    catalog, operator, api
):
    def kept():
        return {
            row.prompt_version_id: (row.runs, row.finished, row.first_used, row.last_used)
            for row in PromptVersionRollup.objects.all()
        }

    before = dict(kept())
    batch = plan(catalog, operator, rows=3, models=(None, catalog.model), choices=("latest",))
    planned = kept()
    assert planned[catalog.v2.pk][0] == before.get(catalog.v2.pk, (0,))[0] + 6
    submit(batch)
    assert kept() == planned  # sending moves nothing counted (scheduling is no outcome)
    prompt_rollups_rebuild()
    assert kept() == planned


@pytest.mark.django_db(transaction=True)
def test_senders_work_in_parallel_but_never_more_than_the_limit(api):
    catalog = Catalog()
    batch = plan(catalog, None, rows=12)
    in_flight = 0
    most = 0
    gate = threading.Lock()
    release = threading.Event()

    def on_request(request):
        nonlocal in_flight, most
        with gate:
            in_flight += 1
            most = max(most, in_flight)
            if in_flight == 3:
                release.set()
        release.wait(timeout=5)
        with gate:
            in_flight -= 1

    api.on_request = on_request

    report = submit(batch, concurrency=3)

    assert report.accepted == 12
    assert most == 3
    assert len(api.runs) == 12


def test_a_429_pauses_every_sender_for_its_retry_after_then_sends_the_rest(catalog, operator, api):
    batch = plan(catalog, operator, rows=4)
    throttled = {"left": 3}  # the client's own 3 attempts give up; then every sender waits

    def on_request(request):
        if request.method == "POST" and throttled["left"] and len(api.runs) == 1:
            throttled["left"] -= 1
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "slow down"})
        return None

    api.on_request = on_request
    clock = Clock()

    report = submit(batch, clock)

    assert report.accepted == 4 and report.deferred == 1 and report.remaining == 0
    assert sum(clock.slept) == pytest.approx(7)  # the server's Retry-After, once
    assert len(api.runs) == 4
    assert len({r.headers["Idempotency-Key"] for r in creates(api)}) == 4
    assert set(batch.runs.values_list("submission", flat=True)) == {Submission.ACCEPTED}


def test_a_long_retry_after_hands_over_to_a_later_task(catalog, operator, api):
    batch = plan(catalog, operator, rows=3)
    api.on_request = lambda request: (
        httpx.Response(429, headers={"Retry-After": "30"}, json={"detail": "slow"})
        if request.method == "POST"
        else None
    )

    report = submit(batch, time_budget=10)

    assert report.accepted == 0 and report.remaining == 3
    assert report.resume_in == pytest.approx(30)
    assert set(batch.runs.values_list("submission", flat=True)) == {Submission.QUEUED}
    assert set(batch.runs.values_list("synced_at", flat=True)) == {None}  # claims released


def test_an_unreachable_api_leaves_runs_queued_never_rejected(catalog, operator, api):
    batch = plan(catalog, operator, rows=2)

    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    api.on_request = refuse

    report = submit(batch, time_budget=20)

    assert report.accepted == 0 and report.remaining == 2 and report.deferred >= 2
    assert set(batch.runs.values_list("submission", flat=True)) == {Submission.QUEUED}
    assert set(batch.runs.values_list("status", flat=True)) == {RunStatus.PENDING}


def test_a_refused_row_is_rejected_and_the_others_still_go(catalog, operator, api):
    batch = plan(catalog, operator, rows=3)
    first_key = str(batch.runs.order_by("batch_row").first().idempotency_key)
    api.on_request = lambda request: (
        httpx.Response(
            422, json={"detail": [{"loc": ["body", "input_values", "age"], "msg": "bad"}]}
        )
        if request.headers.get("Idempotency-Key") == first_key
        else None
    )

    report = submit(batch)

    assert (report.accepted, report.rejected) == (2, 1)
    refused = batch.runs.get(idempotency_key=first_key)
    assert (refused.submission, refused.status) == (Submission.REJECTED, RunStatus.REJECTED)
    assert "Nothing was started" in refused.submission_error


def test_a_bad_api_key_stops_the_batch_and_rejects_the_rest_unsent(catalog, operator, api):
    batch = plan(catalog, operator, rows=3)
    api.fail_with = 401

    report = submit(batch)

    assert report.fatal and report.remaining == 0
    assert len(creates(api)) == 1
    assert set(batch.runs.values_list("status", flat=True)) == {RunStatus.REJECTED}
    # History: one "rejected" entry per run, saying why; rejecting the rest again (a task run
    # twice) finds nothing queued and writes none.
    send._reject_rest(batch, report.fatal)
    rejected = RunEvent.objects.filter(run__batch=batch, kind=RunEvent.Kind.REJECTED)
    assert sorted(rejected.values_list("run_id", flat=True)) == sorted(
        batch.runs.values_list("pk", flat=True)
    )
    unsent = [e for e in rejected if e.detail["message"].startswith("Not sent: ")]
    assert len(unsent) == 2  # the first run was sent and refused; the other two never sent


def test_rejecting_the_rest_touches_only_this_batchs_queued_runs(catalog, operator, api):
    batch = plan(catalog, operator, rows=3)
    other = plan(catalog, operator, rows=1)
    accepted = batch.runs.order_by("pk").first()
    Run.objects.filter(pk=accepted.pk).update(submission=Submission.ACCEPTED)

    send._reject_rest(batch, "the batch stopped")

    assert Run.objects.get(pk=accepted.pk).submission == Submission.ACCEPTED
    assert other.runs.get().submission == Submission.QUEUED
    rest = batch.runs.exclude(pk=accepted.pk)
    assert {(r.submission, r.submission_error) for r in rest} == {
        (Submission.REJECTED, "Not sent: the batch stopped")
    }


def test_a_refusal_never_rejects_a_run_accepted_meanwhile(catalog, operator, api):
    """Another sender (a taken-over chunk) may have sent the same run, with the same key, and
    been accepted: the late refusal of this one must not overwrite that."""
    batch = plan(catalog, operator, rows=1)
    run = batch.runs.get()
    Run.objects.filter(pk=run.pk).update(submission=Submission.ACCEPTED, status=RunStatus.RUNNING)

    send._reject(run, "Cyberdesk refused it.")

    run.refresh_from_db()
    assert (run.submission, run.status) == (Submission.ACCEPTED, RunStatus.RUNNING)
    assert not RunEvent.objects.filter(run=run, kind=RunEvent.Kind.REJECTED).exists()


def test_a_lost_answer_leaves_the_run_unknown_for_the_reconciler(catalog, operator, api):
    batch = plan(catalog, operator, rows=2)
    api.lose_create_answers = 1

    report = submit(batch)

    assert (report.accepted, report.unknown) == (1, 1)
    assert sorted(batch.runs.values_list("submission", flat=True)) == [
        Submission.ACCEPTED,
        Submission.UNKNOWN,
    ]


class WorkerKilled(BaseException):
    """Stands for the worker process dying (SIGKILL): nothing after it runs."""


def test_a_worker_killed_mid_batch_and_restarted_ends_with_exactly_the_planned_runs(
    catalog, operator, api
):
    batch = plan(catalog, operator, rows=6, models=(None, catalog.model))  # 12 runs
    sent = {"count": 0}

    def die_after_five(request):
        if request.method != "POST":
            return None
        sent["count"] += 1
        if sent["count"] == 6:
            api._create(request)  # the API creates the 6th run; its answer dies with us
            raise WorkerKilled
        return None

    api.on_request = die_after_five
    with time_machine.travel(NOW, tick=False) as clock:
        with pytest.raises(WorkerKilled):
            submit(batch)
        assert batch.runs.filter(submission=Submission.ACCEPTED).count() == 5
        assert batch.runs.filter(submission=Submission.QUEUED).count() == 7
        assert len(api.runs) == 6

        api.on_request = None
        clock.shift(CLAIM_TTL + timedelta(seconds=1))  # the dead worker's claim runs out
        report = submit(batch)

    assert report.accepted == 7 and report.remaining == 0
    runs = list(batch.runs.all())
    assert len(runs) == 12
    assert {r.submission for r in runs} == {Submission.ACCEPTED}
    assert len(api.runs) == 12  # exactly the planned runs upstream
    assert len({r.cyberdesk_id for r in runs}) == 12
    keys = [r.headers["Idempotency-Key"] for r in creates(api)]
    assert len(keys) == 13 and len(set(keys)) == 12  # the 6th was sent twice, with one key


def test_a_chunk_another_sender_holds_is_left_alone_until_its_lease_runs_out(
    catalog, operator, api
):
    batch = plan(catalog, operator, rows=2)
    with time_machine.travel(NOW, tick=False):
        assert chunk_claim(batch_id=batch.pk, holder="another-worker") is not None

        report = submit(batch)

    assert report.accepted == 0 and report.remaining == 2 and report.chunks == 0
    assert report.resume_in == pytest.approx(CHUNK_LEASE.total_seconds() + 1)
    assert len(api.runs) == 0


def test_queued_runs_are_never_sent_after_cancel(catalog, operator, api):
    batch = plan(catalog, operator, rows=2)
    batch_cancel_rest(batch=batch, user=operator)

    report = submit(batch)

    assert report.accepted == 0 and creates(api) == []
    assert set(batch.runs.values_list("status", flat=True)) == {RunStatus.CANCELLED}


def submit_with_a_check_due_at_the_second_create(batch, api, meanwhile):
    """Send `batch` one run at a time; during the second create, do `meanwhile` (what another
    request or worker does) and move the sender's clock to its next lease renewal, where it
    looks at the lease and the batch's state."""
    clock = Clock()
    sent = {"count": 0}

    def on_request(request):
        if request.method == "POST":
            sent["count"] += 1
            if sent["count"] == 2:
                meanwhile()
                clock.now += CHUNK_RENEW_EVERY
        return None

    api.on_request = on_request
    return submit(batch, clock)


def test_a_cancel_landing_mid_chunk_stops_the_sender_at_its_next_check(catalog, operator, api):
    """The runs a sender already holds in memory are not sent once the batch is cancelled: it
    looks at the batch's state each time it renews the chunk's lease (mutmut: `_cancelled`
    with its `pk` or `state` condition dropped never saw the cancel and sent all six)."""
    batch = plan(catalog, operator, rows=6)  # one chunk

    report = submit_with_a_check_due_at_the_second_create(
        batch, api, lambda: batch_cancel_rest(batch=batch, user=operator)
    )

    assert len(creates(api)) == 2  # the one in flight lands; the four held back are not sent
    assert report.accepted == 2
    assert batch.runs.filter(submission=Submission.QUEUED).count() == 0
    assert batch.runs.filter(status=RunStatus.CANCELLED).count() == 6


def test_a_sender_that_lost_its_chunk_stops_sending_it(catalog, operator, api):
    """A lease that ran out and was taken over belongs to the new holder: the old sender stops
    at its next renewal and leaves the rest queued for it (mutmut: `lease_lost = run.stop =
    False` kept sending all six, beside the new holder)."""
    batch = plan(catalog, operator, rows=6)  # one chunk

    report = submit_with_a_check_due_at_the_second_create(
        batch,
        api,
        lambda: BatchChunk.objects.filter(batch=batch).update(
            holder="another-worker", lease_until=timezone.now() + CHUNK_LEASE
        ),
    )

    assert len(creates(api)) == 2
    assert report.accepted == 2
    assert batch.runs.filter(submission=Submission.QUEUED).count() == 4  # the new holder's
    chunk = BatchChunk.objects.get(batch=batch)
    assert chunk.holder == "another-worker" and chunk.done_at is None


def test_another_batch_cancelled_does_not_stop_this_one(catalog, operator, api):
    other = plan(catalog, operator, rows=1)
    batch_cancel_rest(batch=other, user=operator)
    batch = plan(catalog, operator, rows=2)

    report = submit(batch)

    assert report.accepted == 2 and len(creates(api)) == 2


# --- Acting on a batch: the request's part ------------------------------------------------------


def test_cancel_the_rest_cancels_unsent_runs_at_once_and_leaves_active_ones_to_the_worker(
    catalog, operator, settings, django_capture_on_commit_callbacks
):
    with serve(settings) as launch_api:
        batch = plan(catalog, operator, rows=1)
        unsent = batch.runs.get()
        active = make_run(catalog.workflow, api=launch_api, batch=batch, status=RunStatus.RUNNING)
        done = make_run(catalog.workflow, api=launch_api, batch=batch, status=RunStatus.SUCCESS)

        with django_capture_on_commit_callbacks(execute=True):
            asked = batch_cancel_rest(batch=batch, user=operator)

        assert launch_api.requests == []  # the API is the worker's business

    assert (asked.done_now, asked.in_background) == (1, 1)
    unsent.refresh_from_db()
    assert (unsent.status, unsent.submission) == (RunStatus.CANCELLED, Submission.REJECTED)
    assert unsent.submission_error == CANCELLED_BEFORE_SENDING
    active.refresh_from_db()
    done.refresh_from_db()
    assert active.status == RunStatus.RUNNING and done.status == RunStatus.SUCCESS
    batch.refresh_from_db()
    assert batch.state == Batch.State.CANCELLED and batch.cancel_requested_at is not None
    (task,) = DBTaskResult.objects.filter(task_path=tasks.batch_cancel_task.module_path)
    assert task.args_kwargs["args"] == [batch.pk, operator.pk]


def test_cancelling_twice_enqueues_one_worker_task(
    catalog, operator, settings, django_capture_on_commit_callbacks
):
    with serve(settings) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow)
        make_run(catalog.workflow, api=launch_api, batch=batch, status=RunStatus.RUNNING)

        with django_capture_on_commit_callbacks(execute=True):
            batch_cancel_rest(batch=batch, user=operator)
            again = batch_cancel_rest(batch=batch, user=operator)

    assert again.in_background == 1
    assert DBTaskResult.objects.filter(task_path=tasks.batch_cancel_task.module_path).count() == 1


def test_a_batch_with_nothing_active_is_cancelled_without_the_worker(
    catalog, operator, api, django_capture_on_commit_callbacks
):
    batch = plan(catalog, operator, rows=2)

    with django_capture_on_commit_callbacks(execute=True):
        asked = batch_cancel_rest(batch=batch, user=operator)

    assert (asked.done_now, asked.in_background) == (2, 0)
    batch.refresh_from_db()
    assert batch.cancel_requested_at is None
    assert not DBTaskResult.objects.filter(task_path=tasks.batch_cancel_task.module_path).exists()


def test_a_run_arriving_after_the_cancel_is_cancelled_upstream_too(catalog, operator, settings):
    with serve(settings) as launch_api:
        batch = plan(catalog, operator, rows=1)
        original = launch_api._create

        def create_then_cancel(request):
            batch_cancel_rest(batch=batch, user=operator)  # lands while the send is in flight
            return original(request)

        launch_api._create = create_then_cancel
        submit(batch)

    run = batch.runs.get()
    assert run.submission == Submission.ACCEPTED and run.status == RunStatus.CANCELLED
    assert len(launch_api.calls("PATCH", f"/v1/runs/{run.cyberdesk_id}")) == 1
    assert launch_api.runs[str(run.cyberdesk_id)]["status"] == "cancelled"
    accepted = RunEvent.objects.get(run=run, kind=RunEvent.Kind.ACCEPTED)
    assert accepted.source == RunEvent.Source.BATCH


def test_retry_failed_records_the_runs_and_their_attempts_and_calls_nothing(
    catalog, operator, settings, django_capture_on_commit_callbacks
):
    with serve(settings) as launch_api:
        batch, failed, errored = batch_with_failures(catalog, launch_api)

        with django_capture_on_commit_callbacks(execute=True):
            asked = batch_retry_failed(batch=batch, user=operator)

        assert launch_api.requests == []

    assert asked.in_background == 2
    batch.refresh_from_db()
    assert batch.retry_requested_at is not None
    (task,) = DBTaskResult.objects.filter(task_path=tasks.batch_retry_task.module_path)
    batch_id, targets, requested_at, user_id = task.args_kwargs["args"]
    assert (batch_id, user_id) == (batch.pk, operator.pk)
    assert targets == [[failed.pk, 1], [errored.pk, 1]]
    assert requested_at == batch.retry_requested_at.isoformat()


def test_retry_failed_with_nothing_failed_asks_nothing(catalog, operator, settings):
    with serve(settings) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow)
        make_run(catalog.workflow, api=launch_api, batch=batch, status=RunStatus.SUCCESS)

        asked = batch_retry_failed(batch=batch, user=operator)

    assert asked.in_background == 0
    batch.refresh_from_db()
    assert batch.retry_requested_at is None


# --- Acting on a batch: the worker's part --------------------------------------------------------


def batch_with_failures(catalog, launch_api):
    batch = Batch.objects.create(workflow=catalog.workflow)
    failed = make_run(
        catalog.workflow, api=launch_api, batch=batch, batch_row=1, status=RunStatus.TASK_FAILED
    )
    errored = make_run(
        catalog.workflow, api=launch_api, batch=batch, batch_row=2, status=RunStatus.ERROR
    )
    make_run(catalog.workflow, api=launch_api, batch=batch, batch_row=3, status=RunStatus.SUCCESS)
    make_run(catalog.workflow, api=launch_api, batch=batch, batch_row=4, status=RunStatus.CANCELLED)
    return batch, failed, errored


def retries(launch_api) -> list[str]:
    return [r.url.path.split("/")[-2] for r in launch_api.requests if r.url.path.endswith("/retry")]


def cancels(launch_api) -> list[str]:
    return [r.url.path.split("/")[-1] for r in launch_api.requests if r.method == "PATCH"]


@contextmanager
def serve_throttled(settings, throttle):
    """The fake API behind `throttle(request)`, which may answer first (e.g. a 429)."""
    with serve(settings) as fake:
        fake.on_request = throttle
        yield fake


def cancelling(batch, clock=None, **kwargs):
    clock = clock or Clock()
    kwargs.setdefault("concurrency", 1)
    return batch_cancel_upstream(batch=batch, sleep=clock.sleep, clock=clock, **kwargs)


def retrying(batch, targets, clock=None, **kwargs):
    clock = clock or Clock()
    kwargs.setdefault("concurrency", 1)
    return batch_retry_upstream(
        batch=batch, targets=targets, sleep=clock.sleep, clock=clock, **kwargs
    )


def test_the_worker_cancels_exactly_the_batchs_active_runs(catalog, operator, settings):
    with serve(settings) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow)
        batch_cancel_rest(batch=batch, user=operator)
        active = [
            make_run(catalog.workflow, api=launch_api, batch=batch, status=status)
            for status in (RunStatus.SCHEDULING, RunStatus.RUNNING, RunStatus.RUNNING_CHECKS)
        ]
        done = make_run(catalog.workflow, api=launch_api, batch=batch, status=RunStatus.SUCCESS)
        other_batch = Batch.objects.create(workflow=catalog.workflow)
        elsewhere = [
            make_run(catalog.workflow, api=launch_api, batch=other_batch),
            make_run(catalog.workflow, api=launch_api),
        ]
        Batch.objects.filter(pk=batch.pk).update(cancel_requested_at=NOW)

        report = cancelling(batch)

    assert (report.done, report.failed, report.remaining) == (3, 0, 0)
    assert sorted(cancels(launch_api)) == sorted(str(r.cyberdesk_id) for r in active)
    assert {r.status for r in Run.objects.filter(pk__in=[r.pk for r in active])} == {
        RunStatus.CANCELLED
    }
    done.refresh_from_db()
    assert done.status == RunStatus.SUCCESS
    assert {r.status for r in Run.objects.filter(pk__in=[r.pk for r in elsewhere])} == {
        RunStatus.RUNNING
    }
    batch.refresh_from_db()
    assert batch.cancel_requested_at is None  # the page stops polling once the rest settle


def test_running_the_cancel_twice_makes_no_extra_calls(catalog, operator, settings):
    with serve(settings) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow, state=Batch.State.CANCELLED)
        for _ in range(2):
            make_run(catalog.workflow, api=launch_api, batch=batch)

        first = cancelling(batch)
        second = cancelling(batch)

    assert first.done == 2 and (second.done, second.skipped) == (0, 0)
    assert len(cancels(launch_api)) == 2


def test_a_run_settled_while_the_cancel_waits_is_skipped(catalog, operator, settings):
    settled = []

    def webhook_meanwhile(request):
        # While the first cancel is on its way, the second run finishes by itself.
        if request.method == "PATCH":
            settled.append(Run.objects.filter(pk=second.pk).update(status=RunStatus.SUCCESS))
        return None

    with serve_throttled(settings, webhook_meanwhile) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow, state=Batch.State.CANCELLED)
        first = make_run(catalog.workflow, api=launch_api, batch=batch, batch_row=1)
        second = make_run(catalog.workflow, api=launch_api, batch=batch, batch_row=2)

        report = cancelling(batch)

    assert (report.done, report.skipped) == (1, 1)
    assert cancels(launch_api) == [str(first.cyberdesk_id)]


def test_a_429_pauses_the_cancel_for_its_retry_after_then_cancels_the_rest(
    catalog, operator, settings
):
    throttled = {"left": 3}  # the client's own 3 attempts give up; then every thread waits

    def throttle(request):
        if request.method == "PATCH" and throttled["left"]:
            throttled["left"] -= 1
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "slow down"})
        return None

    with serve_throttled(settings, throttle) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow, state=Batch.State.CANCELLED)
        runs = [make_run(catalog.workflow, api=launch_api, batch=batch) for _ in range(3)]
        clock = Clock()

        report = cancelling(batch, clock)

    assert (report.done, report.deferred, report.remaining) == (3, 1, 0)
    assert sum(clock.slept) == pytest.approx(7)  # the server's Retry-After, once
    assert {r.status for r in Run.objects.filter(pk__in=[r.pk for r in runs])} == {
        RunStatus.CANCELLED
    }


def test_a_long_retry_after_ends_the_cancel_pass_and_keeps_the_request(catalog, operator, settings):
    def throttle(request):
        if request.method == "PATCH":
            return httpx.Response(429, headers={"Retry-After": "90"}, json={"detail": "slow"})
        return None

    with serve_throttled(settings, throttle) as launch_api:
        batch = Batch.objects.create(
            workflow=catalog.workflow, state=Batch.State.CANCELLED, cancel_requested_at=NOW
        )
        for _ in range(3):
            make_run(catalog.workflow, api=launch_api, batch=batch)

        report = cancelling(batch, time_budget=30)

    assert (report.done, report.remaining) == (0, 3)
    assert report.resume_in == pytest.approx(90)
    assert len(cancels(launch_api)) == 1  # a wait that long ends the pass at the first 429
    batch.refresh_from_db()
    assert batch.cancel_requested_at == NOW  # the page keeps polling; the next pass comes


def test_a_cancel_the_api_refuses_is_reported_and_not_tried_for_ever(catalog, operator, settings):
    def refuse(request):
        if request.method == "PATCH":
            return httpx.Response(404, json={"detail": "Run not found"})
        return None

    with serve_throttled(settings, refuse) as launch_api:
        batch = Batch.objects.create(
            workflow=catalog.workflow, state=Batch.State.CANCELLED, cancel_requested_at=NOW
        )
        run = make_run(catalog.workflow, api=launch_api, batch=batch)

        report = cancelling(batch)

    assert (report.done, report.failed, report.remaining) == (0, 1, 0)
    assert report.failures and report.failures[0].startswith(f"Run {run.pk}: ")
    batch.refresh_from_db()
    assert batch.cancel_requested_at is None


@pytest.mark.django_db(transaction=True)
def test_cancel_threads_cancel_each_run_once(settings):
    catalog = Catalog()
    with serve(settings) as launch_api:
        batch = Batch.objects.create(workflow=catalog.workflow, state=Batch.State.CANCELLED)
        runs = [make_run(catalog.workflow, api=launch_api, batch=batch) for _ in range(9)]

        report = cancelling(batch, concurrency=3)

    assert report.done == 9
    assert sorted(cancels(launch_api)) == sorted(str(r.cyberdesk_id) for r in runs)


def test_the_worker_retries_only_failed_and_errored_runs(catalog, operator, settings):
    with serve(settings) as launch_api:
        batch, failed, errored = batch_with_failures(catalog, launch_api)
        Batch.objects.filter(pk=batch.pk).update(retry_requested_at=NOW)
        targets = [[failed.pk, 1], [errored.pk, 1]]

        report = retrying(batch, targets, requested_at=NOW.isoformat(), user=operator)

    assert (report.done, report.failed, report.remaining) == (2, 0, 0)
    assert sorted(retries(launch_api)) == sorted(
        [str(failed.cyberdesk_id), str(errored.cyberdesk_id)]
    )
    failed.refresh_from_db()
    assert (failed.status, failed.attempt) == (RunStatus.SCHEDULING, 2)
    batch.refresh_from_db()
    assert batch.retry_requested_at is None


def test_running_the_retry_twice_retries_each_run_once_even_if_it_failed_again(
    catalog, operator, settings
):
    with serve(settings) as launch_api:
        batch, failed, errored = batch_with_failures(catalog, launch_api)
        targets = [[failed.pk, 1], [errored.pk, 1]]
        retrying(batch, targets)
        # The retried run failed again at once: that is attempt 2, not the one asked about.
        Run.objects.filter(pk=failed.pk).update(status=RunStatus.TASK_FAILED)

        second = retrying(batch, targets)

    assert (second.done, second.skipped) == (0, 0)
    assert len(retries(launch_api)) == 2
    assert Run.objects.get(pk=failed.pk).attempt == 2


def test_the_retry_never_touches_runs_outside_the_batch(catalog, operator, settings):
    with serve(settings) as launch_api:
        batch, failed, _ = batch_with_failures(catalog, launch_api)
        outsider = make_run(catalog.workflow, api=launch_api, status=RunStatus.TASK_FAILED)

        report = retrying(batch, [[failed.pk, 1], [outsider.pk, 1]])

    assert report.done == 1
    assert retries(launch_api) == [str(failed.cyberdesk_id)]
    outsider.refresh_from_db()
    assert (outsider.status, outsider.attempt) == (RunStatus.TASK_FAILED, 1)


def test_a_throttled_retry_waits_and_is_retried_once(catalog, operator, settings):
    throttled = {"left": 3}

    def throttle(request):
        if request.url.path.endswith("/retry") and throttled["left"]:
            throttled["left"] -= 1
            return httpx.Response(429, headers={"Retry-After": "5"}, json={"detail": "slow"})
        return None

    with serve_throttled(settings, throttle) as launch_api:
        batch, failed, errored = batch_with_failures(catalog, launch_api)
        clock = Clock()

        report = retrying(batch, [[failed.pk, 1], [errored.pk, 1]], clock)

    assert (report.done, report.deferred, report.remaining) == (2, 1, 0)
    assert sum(clock.slept) == pytest.approx(5)
    assert {r.attempt for r in Run.objects.filter(pk__in=[failed.pk, errored.pk])} == {2}
    # The throttled run's retry went out under its attempt-2 key: 3 refused tries, 1 accepted.
    keys = [
        r.headers["Idempotency-Key"] for r in launch_api.requests if r.url.path.endswith("/retry")
    ]
    assert len(keys) == 5 and len(set(keys)) == 2
