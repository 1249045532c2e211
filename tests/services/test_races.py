"""The lines that keep "one click, one run" true when two things happen at once.

Each test makes the two things overlap for certain, never by luck or by sleeping: the second
actor runs while the first one's request is in flight (inside the fake API's `on_request`), or
real threads meet at a barrier just before the contended write (PostgreSQL only: SQLite
serialises writers and would answer "table is locked", not the race being tested).

- the launch is committed before the API is called (seen from a second connection);
- two launches with the same token at once → one run, one API call (the IntegrityError branch);
- two retries of the same attempt at once → one upstream retry (the attempt compare-and-set);
- two reconciler passes at once → an unknown launch re-sent once (the `synced_at` claim).
"""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection

from launcher.models import Run, RunStatus, Submission
from launcher.services import reconcile, runs
from launcher.services.runs import RunActionFailed, run_launch, run_retry
from tests.fake_cyberdesk import serve
from tests.launch_api import make_run

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="racing writers across threads need PostgreSQL"
)


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def _launch(catalog, user, key):
    return run_launch(
        user=user,
        workflow=catalog.workflow,
        model_option=None,
        prompt_choice="stored",
        input_values={"customer_id": "c-1", "age": 40},
        idempotency_key=key,
    )


def _in_another_connection(work):
    """Run `work()` on another thread, hence another database connection; return its result
    (or raise what it raised)."""
    box = {}

    def target():
        try:
            box["result"] = work()
        except Exception as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=30)
    if "error" in box:
        raise box["error"]
    return box["result"]


# --- 1. Stored and committed before the API hears of it ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_run_is_committed_before_the_api_is_called_seen_from_another_connection(
    catalog, api, django_user_model
):
    """Read on the same connection, an uncommitted row would be visible too; read from another
    one while the create request is in flight, only a committed row is."""
    seen = []

    def while_in_flight(request):
        if request.method == "POST" and request.url.path.endswith("/v1/runs"):
            key = request.headers["Idempotency-Key"]
            seen.append(
                _in_another_connection(
                    lambda: list(
                        Run.objects.filter(idempotency_key=key).values_list("submission", flat=True)
                    )
                )
            )

    api.on_request = while_in_flight
    user = django_user_model.objects.create_user(username="olivia", password="pw")

    run = _launch(catalog, user, uuid.uuid4())

    assert seen == [[Submission.QUEUED]]  # stored, committed, not yet marked accepted
    assert run.submission == Submission.ACCEPTED


# --- 2. The same token twice at the same moment --------------------------------------------------


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_two_launches_with_one_token_at_once_give_one_run_and_one_call(
    catalog, api, django_user_model, monkeypatch
):
    """Both requests pass the "already stored?" check before either stores the run; the second
    insert then hits the unique key and must return the first request's run, unsent."""
    user = django_user_model.objects.create_user(username="olivia", password="pw")
    both_checked = threading.Barrier(2, timeout=10)
    real_resolve = runs.prompt_resolve

    def resolve_after_both_checked(**kwargs):  # runs between the check and the insert
        both_checked.wait()
        return real_resolve(**kwargs)

    monkeypatch.setattr(runs, "prompt_resolve", resolve_after_both_checked)
    key = uuid.uuid4()
    results, failures = [], []

    def post():
        try:
            results.append(_launch(catalog, user, key).pk)
        except Exception as exc:  # asserted below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert len(results) == 2 and len(set(results)) == 1
    assert Run.objects.count() == 1
    assert len(api.creates) == 1


# --- 3. Two retries of the same attempt ----------------------------------------------------------


@pytest.mark.django_db
def test_two_retries_of_the_same_attempt_at_once_send_one_retry(catalog, api, clock):
    run = make_run(catalog.workflow, status=RunStatus.TASK_FAILED, api=api)
    first_click = Run.objects.get(pk=run.pk)
    second_click = Run.objects.get(pk=run.pk)  # read before the first retry changed anything
    second = []

    def second_click_while_first_in_flight(request):
        if request.url.path.endswith("/retry") and not second:
            try:
                run_retry(run=second_click, user=None)
            except RunActionFailed as exc:
                second.append(str(exc))
            else:
                second.append("retried")

    api.on_request = second_click_while_first_in_flight

    run_retry(run=first_click, user=None)

    assert second == ["This run is already being retried."]
    assert len(api.calls("POST", f"/v1/runs/{run.cyberdesk_id}/retry")) == 1
    run.refresh_from_db()
    assert (run.attempt, run.status) == (2, RunStatus.SCHEDULING)


# --- 4. Two reconciler passes ------------------------------------------------------------------


def _unknown_run(workflow, **fields):
    return Run.objects.create(
        workflow=workflow,
        prompt_mode="stored",
        input_values={"customer_id": "c-1", "age": 40},
        submission=Submission.UNKNOWN,
        status=RunStatus.PENDING,
        **fields,
    )


@pytest.mark.django_db
def test_two_reconciler_passes_at_once_re_send_an_unknown_launch_once(catalog, api, clock):
    """Pass A lists both unknown runs, then sends the first; meanwhile pass B claims the second
    and re-sends it, and its answer is lost. When A reaches the second run, B's claim (a fresh
    `synced_at`) must stop it: the second run is re-sent once, not twice."""
    first = _unknown_run(catalog.workflow)
    second = _unknown_run(catalog.workflow)
    clock.shift(timedelta(minutes=5))
    pass_b = []

    def pass_b_while_a_sends(request):
        if request.method == "POST" and not pass_b:
            pass_b.append("started")
            api.lose_create_answers = 1  # B's re-send of the second run: no answer
            pass_b.append(reconcile.runs_reconcile())

    api.on_request = pass_b_while_a_sends

    pass_a = reconcile.runs_reconcile()

    def sends(run):
        return [r for r in api.creates if r.headers["Idempotency-Key"] == str(run.idempotency_key)]

    assert len(sends(first)) == 1
    assert len(sends(second)) == 1
    assert (pass_a.resubmitted, pass_a.unsettled) == (1, 0)
    assert (pass_b[1].resubmitted, pass_b[1].unsettled) == (0, 1)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.submission, second.submission) == (Submission.ACCEPTED, Submission.UNKNOWN)
