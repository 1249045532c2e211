"""run_apply_upstream, run_refresh (compare-and-set) and runs_refresh_many."""

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from launcher.cyberdesk import errors, types
from launcher.models import Run, RunEvent, RunStatus, Submission, Workflow
from launcher.services import run_sync
from launcher.services.api_status import api_outage, api_outage_note
from tests.fake_cyberdesk import FakeCyberdesk, upstream_run
from tests.launch_api import NOW


@pytest.fixture
def api(settings):
    settings.RUN_REFRESH_INTERVAL_SECONDS = 2.0
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


@pytest.fixture
def workflow(db):
    return Workflow.objects.create(id=uuid.uuid4(), name="Invoice intake")


def make_run(workflow, api=None, *, status=RunStatus.RUNNING, upstream_status=None, **fields):
    """A launched run, and (with `api`) its upstream twin."""
    cyberdesk_id = fields.pop("cyberdesk_id", uuid.uuid4())
    run = Run.objects.create(
        workflow=workflow,
        prompt_mode="stored",
        cyberdesk_id=cyberdesk_id,
        submission=Submission.ACCEPTED,
        status=status,
        **fields,
    )
    if api is not None:
        api.add(
            upstream_run(
                cyberdesk_id,
                workflow_id=workflow.id,
                status=upstream_status or status,
                created_at=run.created_at,
            )
        )
    return run


def parsed(**fields) -> types.Run:
    return types.Run.from_api(upstream_run(**fields))


# --- run_apply_upstream ---------------------------------------------------------------------


@pytest.mark.django_db
class TestApplyUpstream:
    def test_news_of_a_launch_whose_outcome_was_unknown_records_its_acceptance_once(self, workflow):
        """The reconciler (or a webhook) seeing the run upstream settles the launch: one
        "accepted" entry naming the upstream id, and none for later news."""
        cyberdesk_id = uuid.uuid4()
        run = Run.objects.create(
            workflow=workflow,
            prompt_mode="stored",
            submission=Submission.UNKNOWN,
            status=RunStatus.PENDING,
        )

        run_sync.run_apply_upstream(
            run, parsed(run_id=cyberdesk_id, status="running"), source="reconciler"
        )
        run_sync.run_apply_upstream(run, parsed(run_id=cyberdesk_id, status="running_checks"))

        run.refresh_from_db()
        assert (run.submission, run.cyberdesk_id) == (Submission.ACCEPTED, cyberdesk_id)
        accepted = RunEvent.objects.filter(run=run, kind=RunEvent.Kind.ACCEPTED)
        assert [(e.source, e.detail) for e in accepted] == [
            ("reconciler", {"cyberdesk_id": str(cyberdesk_id)})
        ]

    def test_it_copies_status_and_results(self, workflow):
        run = make_run(workflow)
        ended = NOW.isoformat()

        changed = run_sync.run_apply_upstream(
            run,
            parsed(
                run_id=run.cyberdesk_id,
                status="success",
                started_at=(NOW - timedelta(minutes=2)).isoformat(),
                ended_at=ended,
                output_data={"total": 3},
                error=[],
                post_run_checks=[{"status": "success", "name": "Total present"}],
                usage_metadata={"total_agentic_steps": 12},
                run_message_history=[{"role": "assistant"}],
            ),
        )

        assert changed is True
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCESS
        assert run.duration == timedelta(minutes=2)
        assert run.output_data == {"total": 3}
        assert run.post_run_checks == [{"status": "success", "name": "Total present"}]
        assert run.usage_metadata == {"total_agentic_steps": 12}
        assert run.message_history == [{"role": "assistant"}]

    def test_errors_are_copied_as_a_list(self, workflow):
        run = make_run(workflow)

        run_sync.run_apply_upstream(
            run, parsed(run_id=run.cyberdesk_id, status="error", error=["Machine lost"])
        )

        assert Run.objects.get(pk=run.pk).errors == ["Machine lost"]

    @pytest.mark.parametrize("older", ["scheduling", "running", "running_checks"])
    def test_an_older_status_never_overwrites_a_finished_run(self, workflow, older):
        run = make_run(workflow, status=RunStatus.SUCCESS, output_data={"total": 3})

        changed = run_sync.run_apply_upstream(run, parsed(run_id=run.cyberdesk_id, status=older))

        assert changed is False
        run.refresh_from_db()
        assert (run.status, run.output_data) == (RunStatus.SUCCESS, {"total": 3})

    @pytest.mark.parametrize(
        "current, older",
        [
            (RunStatus.RUNNING, "scheduling"),
            (RunStatus.RUNNING_CHECKS, "running"),  # STATUS_RANK[RUNNING_CHECKS] > RUNNING
            (RunStatus.RUNNING_CHECKS, "scheduling"),
        ],
    )
    def test_an_unfinished_run_never_moves_back(self, workflow, current, older):
        run = make_run(workflow, status=current)

        changed = run_sync.run_apply_upstream(run, parsed(run_id=run.cyberdesk_id, status=older))

        assert changed is False
        assert Run.objects.get(pk=run.pk).status == current

    def test_running_checks_follows_running(self, workflow):
        run = make_run(workflow, status=RunStatus.RUNNING)

        run_sync.run_apply_upstream(run, parsed(run_id=run.cyberdesk_id, status="running_checks"))

        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING_CHECKS

    def test_the_first_terminal_status_sticks(self, workflow):
        run = make_run(workflow, status=RunStatus.CANCELLED)

        run_sync.run_apply_upstream(run, parsed(run_id=run.cyberdesk_id, status="success"))

        assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED

    def test_a_finished_runs_results_are_kept_and_only_its_gaps_filled(self, workflow):
        """A second terminal event (a late poll, a webhook redelivered under another id) may
        fill what is missing (the message history a list call left out), never replace."""
        run = make_run(
            workflow,
            status=RunStatus.SUCCESS,
            ended_at=NOW,
            output_data={"total": 3},
            usage_metadata={"total_agentic_steps": 12},
        )

        run_sync.run_apply_upstream(
            run,
            parsed(
                run_id=run.cyberdesk_id,
                status="success",
                ended_at=(NOW + timedelta(minutes=1)).isoformat(),
                output_data={"total": 4},
                usage_metadata={"total_agentic_steps": 13},
                run_message_history=[{"role": "assistant"}],
            ),
        )

        run.refresh_from_db()
        assert (run.output_data, run.ended_at) == ({"total": 3}, NOW)
        assert run.usage_metadata == {"total_agentic_steps": 12}
        assert run.message_history == [{"role": "assistant"}]

    def test_an_unfinished_runs_values_follow_the_news(self, workflow):
        run = make_run(workflow, usage_metadata={"total_agentic_steps": 1})

        run_sync.run_apply_upstream(
            run,
            parsed(
                run_id=run.cyberdesk_id,
                status="running",
                usage_metadata={"total_agentic_steps": 2},
            ),
        )

        assert Run.objects.get(pk=run.pk).usage_metadata == {"total_agentic_steps": 2}

    def test_a_projection_never_erases_what_we_know(self, workflow):
        run = make_run(
            workflow,
            status=RunStatus.RUNNING_CHECKS,
            message_history=[{"role": "assistant"}],
            errors=["check flaked"],
        )
        # A list item with fields= carries no message history and no errors key.
        item = types.Run.from_api(
            {
                "id": str(run.cyberdesk_id),
                "workflow_id": str(workflow.id),
                "machine_id": None,
                "status": "success",
                "created_at": NOW.isoformat(),
                "ended_at": NOW.isoformat(),
            }
        )

        run_sync.run_apply_upstream(run, item)

        run.refresh_from_db()
        assert run.status == RunStatus.SUCCESS
        assert run.ended_at == NOW
        assert run.message_history == [{"role": "assistant"}]
        assert run.errors == ["check flaked"]

    def test_a_retry_the_launcher_asked_for_starts_the_run_afresh(self, workflow):
        run = make_run(
            workflow,
            status=RunStatus.ERROR,
            errors=["Machine lost"],
            output_data={"partial": True},
            ended_at=NOW,
            cost_usd=Decimal("0.5"),
        )
        Run.objects.filter(pk=run.pk).update(attempt=2)

        changed = run_sync.run_apply_upstream(
            run, parsed(run_id=run.cyberdesk_id, status="scheduling"), restart=True
        )

        assert changed is True
        run.refresh_from_db()
        assert run.status == RunStatus.SCHEDULING
        assert (run.errors, run.output_data, run.ended_at, run.cost_usd) == ([], None, None, None)

    def test_a_retry_answer_that_already_carries_values_replaces_the_old_attempts(self, workflow):
        """The fresh attempt replaces the finished one wholesale: whatever the retry's answer
        carries is the new attempt's, even when it is already under way."""
        run = make_run(
            workflow,
            status=RunStatus.ERROR,
            started_at=NOW - timedelta(hours=1),
            ended_at=NOW - timedelta(minutes=50),
            output_data={"partial": True},
            errors=["Machine lost"],
            post_run_checks=[{"status": "error", "name": "old"}],
            usage_metadata={"total_agentic_steps": 99},
            message_history=[{"role": "assistant", "content": "old"}],
            attachments=[{"filename": "old.pdf"}],
        )
        Run.objects.filter(pk=run.pk).update(attempt=2)
        started = (NOW - timedelta(seconds=5)).isoformat()
        ended = NOW.isoformat()

        run_sync.run_apply_upstream(
            run,
            parsed(
                run_id=run.cyberdesk_id,
                status="running",
                started_at=started,
                ended_at=ended,
                output_data={"fresh": 1},
                error=["new"],
                post_run_checks=[{"status": "success", "name": "new"}],
                usage_metadata={"total_agentic_steps": 1},
                run_message_history=[{"role": "assistant", "content": "new"}],
            ),
            restart=True,
        )

        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING
        assert (run.started_at, run.ended_at) == (NOW - timedelta(seconds=5), NOW)
        assert (run.output_data, run.errors) == ({"fresh": 1}, ["new"])
        assert run.post_run_checks == [{"status": "success", "name": "new"}]
        assert run.usage_metadata == {"total_agentic_steps": 1}
        assert run.message_history == [{"role": "assistant", "content": "new"}]
        assert run.attachments is None  # the new attempt's are fetched when it finishes

    def test_seeing_the_run_upstream_settles_an_unknown_launch(self, workflow):
        run = make_run(workflow, status=RunStatus.PENDING, cyberdesk_id=None)
        Run.objects.filter(pk=run.pk).update(
            submission=Submission.UNKNOWN, submission_error="timed out"
        )
        run.refresh_from_db()
        upstream_id = uuid.uuid4()

        run_sync.run_apply_upstream(run, parsed(run_id=upstream_id, status="scheduling"))

        run.refresh_from_db()
        assert run.cyberdesk_id == upstream_id
        assert (run.submission, run.submission_error) == (Submission.ACCEPTED, "")
        assert run.status == RunStatus.SCHEDULING

    def test_a_run_we_thought_was_never_accepted_takes_the_apis_status(self, workflow):
        run = make_run(workflow, status=RunStatus.REJECTED, cyberdesk_id=None)
        Run.objects.filter(pk=run.pk).update(submission=Submission.REJECTED)
        run.refresh_from_db()

        run_sync.run_apply_upstream(run, parsed(status="running"))

        run.refresh_from_db()
        assert (run.submission, run.status) == (Submission.ACCEPTED, RunStatus.RUNNING)

    def test_news_about_another_upstream_run_is_ignored(self, workflow):
        run = make_run(workflow)

        changed = run_sync.run_apply_upstream(run, parsed(status="success"))

        assert changed is False
        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING

    def test_an_unknown_status_is_ignored(self, workflow):
        run = make_run(workflow)

        run_sync.run_apply_upstream(run, parsed(run_id=run.cyberdesk_id, status="paused"))

        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING

    def test_nothing_new_is_no_change(self, workflow):
        run = make_run(workflow)

        assert run_sync.run_apply_upstream(run, parsed(run_id=run.cyberdesk_id)) is False


# --- run_refresh ----------------------------------------------------------------------------


@pytest.mark.django_db
class TestRefresh:
    def test_it_refreshes_at_most_once_per_interval(self, workflow, api, clock):
        run = make_run(workflow, api)
        api.runs[str(run.cyberdesk_id)]["status"] = "running_checks"

        first = run_sync.run_refresh(run)
        assert first.status == RunStatus.RUNNING_CHECKS
        api.runs[str(run.cyberdesk_id)]["status"] = "success"
        clock.shift(timedelta(seconds=1.9))
        second = run_sync.run_refresh(Run.objects.get(pk=run.pk))
        assert second.status == RunStatus.RUNNING_CHECKS  # the database only
        assert api.calls["GET /v1/runs/{id}"] == 1

        clock.shift(timedelta(seconds=0.1))
        third = run_sync.run_refresh(Run.objects.get(pk=run.pk))

        assert third.status == RunStatus.SUCCESS
        assert api.calls["GET /v1/runs/{id}"] == 2

    def test_a_copy_read_within_the_interval_is_used_as_it_is(
        self, workflow, api, clock, django_assert_num_queries
    ):
        run = make_run(workflow, api)
        api.runs[str(run.cyberdesk_id)]["status"] = "running_checks"
        run_sync.run_refresh(run)
        viewer_copy = Run.objects.get(pk=run.pk)  # what a poll reads

        with django_assert_num_queries(0):  # its stamp says no refresh is due: no claim
            refreshed = run_sync.run_refresh(viewer_copy)

        assert refreshed.status == RunStatus.RUNNING_CHECKS
        assert api.calls["GET /v1/runs/{id}"] == 1

    def test_an_older_copy_loses_the_claim_and_reads_the_database(
        self, workflow, api, clock, django_assert_num_queries
    ):
        run = make_run(workflow, api)
        viewer_copy = Run.objects.get(pk=run.pk)  # read before another viewer's refresh
        api.runs[str(run.cyberdesk_id)]["status"] = "running_checks"
        run_sync.run_refresh(run)

        with django_assert_num_queries(2):  # the failed claim, then the re-read
            refreshed = run_sync.run_refresh(viewer_copy)

        assert refreshed.status == RunStatus.RUNNING_CHECKS
        assert api.calls["GET /v1/runs/{id}"] == 1

    def test_relations_the_page_loaded_stay_loaded(
        self, workflow, api, clock, django_assert_num_queries
    ):
        run = make_run(workflow, api)
        viewer_copy = Run.objects.select_related("workflow").get(pk=run.pk)
        run_sync.run_refresh(run)  # another viewer refreshed a moment ago

        refreshed = run_sync.run_refresh(viewer_copy)

        with django_assert_num_queries(0):
            assert refreshed.workflow.name == "Invoice intake"

    def test_force_skips_the_interval(self, workflow, api, clock):
        run = make_run(workflow, api)
        run_sync.run_refresh(run)

        run_sync.run_refresh(run, force=True)

        assert api.calls["GET /v1/runs/{id}"] == 2

    def test_a_finished_run_is_not_refreshed(self, workflow, api, clock):
        run = make_run(workflow, api, status=RunStatus.SUCCESS)

        assert run_sync.run_refresh(run) is run
        assert not api.requests

    def test_a_run_the_api_never_accepted_is_not_refreshed(self, workflow, api, clock):
        run = make_run(workflow, status=RunStatus.PENDING, cyberdesk_id=None)

        run_sync.run_refresh(run)

        assert not api.requests

    def test_the_api_being_down_leaves_the_last_known_state(self, workflow, api, clock):
        run = make_run(workflow, api, status=RunStatus.RUNNING)
        api.fail_with = 503

        refreshed = run_sync.run_refresh(run)

        assert refreshed.status == RunStatus.RUNNING
        assert api_outage() is not None  # pages stop trying until it answers again
        # The failed attempt still counts: the next poll within the interval does not hammer.
        calls = len(api.requests)
        run_sync.run_refresh(refreshed)
        assert len(api.requests) == calls

    def test_finishing_fetches_the_cost_once(self, workflow, api, clock):
        run = make_run(workflow, api, upstream_status="success")
        api.costs[str(run.cyberdesk_id)] = 0.123456789

        refreshed = run_sync.run_refresh(run)

        assert refreshed.status == RunStatus.SUCCESS
        assert refreshed.cost_usd == Decimal("0.123457")
        assert Run.objects.get(pk=run.pk).cost_usd == Decimal("0.123457")
        clock.shift(timedelta(seconds=10))
        run_sync.run_refresh(refreshed)
        assert api.calls["GET llm-costs"] == 1

    def test_a_run_finished_by_a_webhook_during_the_call_is_not_finalized_again(
        self, workflow, api, clock
    ):
        """The claim saw the run unfinished; the webhook that finished it while the poll waited
        on the API has already queued its finalizing, so the poll fetches no cost of its own."""
        run = make_run(workflow, api, upstream_status="success")
        upstream = types.Run.from_api(api.runs[str(run.cyberdesk_id)])

        def webhook_lands_meanwhile(request):
            if request.url.path.endswith(str(run.cyberdesk_id)):
                run_sync.run_apply_upstream(Run.objects.get(pk=run.pk), upstream, source="webhook")

        api.on_request = webhook_lands_meanwhile

        refreshed = run_sync.run_refresh(run)

        assert refreshed.status == RunStatus.SUCCESS
        assert api.calls["GET llm-costs"] == 0

    @pytest.mark.parametrize(
        ("how", "source"), [("refresh", "poll"), ("apply", "poll"), ("apply_as_webhook", "webhook")]
    )
    def test_a_status_change_is_recorded_with_its_source_and_both_statuses(
        self, workflow, api, clock, how, source
    ):
        run = make_run(workflow, api, upstream_status="running_checks")
        upstream = types.Run.from_api(api.runs[str(run.cyberdesk_id)])

        if how == "refresh":
            run_sync.run_refresh(run)  # a page's poll: the default source
        elif how == "apply":
            run_sync.run_apply_upstream(run, upstream)
        else:
            run_sync.run_apply_upstream(run, upstream, source="webhook")

        event = RunEvent.objects.get(run=run, kind=RunEvent.Kind.STATUS)
        assert event.source == source
        assert event.detail == {"from": "running", "to": "running_checks"}

    def test_a_cost_the_api_will_not_give_stays_unknown(self, workflow, api, clock):
        run = make_run(workflow, api, upstream_status="success")
        api.on_request = lambda request: (
            setattr(api, "fail_with", 403) if request.url.path.endswith("llm-costs") else None
        )

        refreshed = run_sync.run_refresh(run)

        assert refreshed.status == RunStatus.SUCCESS
        assert refreshed.cost_usd is None


class _LockReleases:
    """Counts the moments a lock may have been released: a statement finished (autocommit) or
    a transaction committed. A thread refused with "table is locked" waits for the count to
    move past the value it read before trying, so a release between its refusal and its wait
    is not missed, and it never waits for time to pass."""

    def __init__(self):
        self.count = 0
        self.changed = threading.Condition()

    def note(self):
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_past(self, seen: int):
        with self.changed:
            # The bound only turns a lock never released (a bug) into a failure, not a hang.
            moved = self.changed.wait_for(lambda: self.count != seen, timeout=20)
        assert moved, "a SQLite table lock was never released"


_lock_releases = _LockReleases()


def wait_while_sqlite_table_is_locked(execute, sql, params, many, context):
    """The in-memory SQLite test database shares one cache between threads and answers
    "table is locked" at once, where a real SQLite file (WAL, 20 s timeout) waits for the lock.
    Wait here instead, until another thread has finished a statement or committed, so the
    threads contend the way they would in production."""
    db = context["connection"]
    while True:
        seen = _lock_releases.count
        try:
            result = execute(sql, params, many, context)
        except OperationalError as exc:
            if db.vendor != "sqlite" or "locked" not in str(exc):
                raise
            _lock_releases.wait_past(seen)
            continue
        if db.in_atomic_block:
            transaction.on_commit(_lock_releases.note, using=db.alias)
        _lock_releases.note()
        return result


@pytest.mark.django_db(transaction=True)
def test_concurrent_pollers_make_one_upstream_call_per_interval(workflow, api, clock):
    """Eight viewers poll the same run at the same moment: one of them calls the API, the
    others read the database. The winner's call is held until every loser has answered, so a
    second call could not hide behind timing."""
    run = make_run(workflow, api, upstream_status="running_checks")
    pollers = 8
    start = threading.Barrier(pollers)
    losers_done = threading.Semaphore(0)
    results: list = []
    failures: list = []

    def hold_until_losers_answered(request):
        for _ in range(pollers - 1):
            assert losers_done.acquire(timeout=20), "the other pollers never answered"

    api.on_request = hold_until_losers_answered

    def poll():
        try:
            start.wait(timeout=20)
            with connection.execute_wrapper(wait_while_sqlite_table_is_locked):
                refreshed = run_sync.run_refresh(Run.objects.get(pk=run.pk))
            results.append(refreshed.status)
            if refreshed.status == RunStatus.RUNNING:  # a loser: it read the database
                losers_done.release()
        except Exception as exc:  # surfaced below, not lost in the thread
            failures.append(exc)
            losers_done.release()
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(pollers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures
    assert api.calls["GET /v1/runs/{id}"] == 1
    assert sorted(results) == [RunStatus.RUNNING] * 7 + [RunStatus.RUNNING_CHECKS]

    # The next interval: again exactly one call, however many poll.
    api.on_request = None
    clock.shift(timedelta(seconds=2))
    for _ in range(pollers):
        run_sync.run_refresh(Run.objects.get(pk=run.pk))
    assert api.calls["GET /v1/runs/{id}"] == 2


# --- runs_refresh_many ----------------------------------------------------------------------


@pytest.mark.django_db
class TestRefreshMany:
    def test_it_refreshes_a_workflows_runs_with_one_list_call(self, workflow, api, clock):
        runs = [make_run(workflow, api) for _ in range(5)]
        for run in runs[:3]:
            api.runs[str(run.cyberdesk_id)].update(status="running_checks")

        changed = run_sync.runs_refresh_many(runs)

        assert changed == 3
        assert api.calls == {"GET /v1/runs": 1}
        request = api.requests[0]
        assert request.url.params["workflow_id"] == str(workflow.id)
        assert request.url.params["sort_mode"] == "created_at_desc"
        assert "run_message_history" not in request.url.params.get_list("fields")
        statuses = sorted(Run.objects.values_list("status", flat=True))
        assert statuses == ["running"] * 2 + ["running_checks"] * 3

    def test_one_list_call_per_workflow(self, workflow, api, clock):
        other = Workflow.objects.create(id=uuid.uuid4(), name="Claims")
        runs = [make_run(workflow, api), make_run(other, api), make_run(other, api)]

        run_sync.runs_refresh_many(runs)

        assert api.calls == {"GET /v1/runs": 2}

    def test_runs_refreshed_within_the_interval_are_left_alone(self, workflow, api, clock):
        runs = [make_run(workflow, api) for _ in range(3)]
        run_sync.run_refresh(runs[0])
        api.requests.clear()

        run_sync.runs_refresh_many(runs)
        run_sync.runs_refresh_many(runs)  # a second viewer, same moment

        assert len(api.requests) == 1  # one list call, for the two stale runs

    def test_a_poll_that_claims_takes_the_workflows_fresher_runs_along(self, workflow, api, clock):
        # Stamps scattered across the interval (runs refreshed one by one from their pages)…
        runs = [make_run(workflow, api) for _ in range(4)]
        for offset, run in enumerate(runs):
            Run.objects.filter(pk=run.pk).update(
                synced_at=NOW - timedelta(seconds=2.5 - 0.5 * offset)
            )

        # …one poll per half second for four seconds: without the sweep, each poll would find
        # another run just due and make a list call of its own.
        for _ in range(8):
            run_sync.runs_refresh_many(runs)
            clock.shift(timedelta(seconds=0.5))

        assert api.calls == {"GET /v1/runs": 2}  # one per 2 s interval
        assert len(set(Run.objects.values_list("synced_at", flat=True))) == 1

    @pytest.mark.parametrize("count", [5, 50])
    def test_a_poll_that_brings_no_news_costs_the_same_however_many_runs(
        self, workflow, api, clock, count, django_assert_num_queries
    ):
        runs = [make_run(workflow, api) for _ in range(count)]
        started = (NOW - timedelta(seconds=30)).isoformat()
        for run in runs:
            api.runs[str(run.cyberdesk_id)]["started_at"] = started
        assert run_sync.runs_refresh_many(runs) == count  # the news: every run started
        clock.shift(timedelta(seconds=2))
        stamps_before = set(Run.objects.values_list("synced_at", flat=True))

        # claim UPDATE, sweep UPDATE, read the claimed rows: no lock, no write per run
        with django_assert_num_queries(3):
            assert run_sync.runs_refresh_many(runs) == 0

        assert api.calls == {"GET /v1/runs": 2}
        assert set(Run.objects.values_list("synced_at", flat=True)) == {NOW + timedelta(seconds=2)}
        assert stamps_before == {NOW}

    def test_only_the_runs_the_news_changes_are_written(
        self, workflow, api, clock, django_assert_num_queries
    ):
        runs = [make_run(workflow, api) for _ in range(5)]
        api.runs[str(runs[2].cyberdesk_id)].update(status="success", output_data={"total": 3})

        with CaptureQueriesContext(connection) as queries:
            assert run_sync.runs_refresh_many(runs) == 1

        locks = [q["sql"] for q in queries if q["sql"].lstrip().startswith("SELECT")]
        writes = [q["sql"] for q in queries if q["sql"].lstrip().startswith("UPDATE")]
        assert len(locks) == 2  # the claimed rows, then the changed run under its lock
        assert len(writes) == 3  # claim, sweep, the changed run
        changed = Run.objects.get(pk=runs[2].pk)
        assert (changed.status, changed.output_data) == (RunStatus.SUCCESS, {"total": 3})
        assert set(Run.objects.exclude(pk=runs[2].pk).values_list("status", flat=True)) == {
            RunStatus.RUNNING
        }

    def test_news_older_than_a_write_since_the_claim_is_still_refused(
        self, workflow, api, clock, monkeypatch
    ):
        run = make_run(workflow, api, upstream_status="running_checks")
        real_list = run_sync._list_upstream

        def webhook_lands_during_the_list_call(*args, **kwargs):
            found = real_list(*args, **kwargs)
            Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCESS)
            return found

        monkeypatch.setattr(run_sync, "_list_upstream", webhook_lands_during_the_list_call)

        assert run_sync.runs_refresh_many([run]) == 0  # checked again under the lock

        assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCESS

    def test_nothing_stale_means_no_call(self, workflow, api, clock):
        runs = [make_run(workflow, api, status=RunStatus.SUCCESS)]

        assert run_sync.runs_refresh_many(runs) == 0
        assert not api.requests

    def test_it_pages_until_it_has_seen_every_run(self, workflow, api, clock, monkeypatch):
        monkeypatch.setattr(run_sync, "LIST_PAGE_SIZE", 2)
        old = make_run(workflow, api)
        for _ in range(4):  # newer runs that push ours to the last page
            api.add(upstream_run(workflow_id=workflow.id, created_at=NOW + timedelta(minutes=1)))
        api.runs[str(old.cyberdesk_id)]["status"] = "success"

        run_sync.runs_refresh_many([old])

        assert Run.objects.get(pk=old.pk).status == RunStatus.SUCCESS
        assert api.calls["GET /v1/runs"] == 3

    def test_the_list_call_asks_for_a_few_runs_when_a_few_are_wanted(self, workflow, api, clock):
        runs = [make_run(workflow, api) for _ in range(3)]

        run_sync.runs_refresh_many(runs)

        (list_call,) = api.requests
        assert list_call.url.params["limit"] == "50"  # not the API's maximum of 1,000
        assert list_call.url.params["skip"] == "0"

    def test_a_run_far_down_the_list_is_still_found_by_paging_on(self, workflow, api, clock):
        old = make_run(workflow, api, upstream_status="running_checks")
        for _ in range(120):  # newer runs push ours past the first two pages (50, then 100)
            api.add(upstream_run(workflow_id=workflow.id, created_at=NOW + timedelta(minutes=1)))

        run_sync.runs_refresh_many([old])

        assert Run.objects.get(pk=old.pk).status == RunStatus.RUNNING_CHECKS
        pages = [(r.url.params["skip"], r.url.params["limit"]) for r in api.requests]
        assert pages == [("0", "50"), ("50", "100")]

    def test_many_runs_wanted_ask_for_more_but_never_past_the_maximum(
        self, workflow, api, clock, monkeypatch
    ):
        monkeypatch.setattr(run_sync, "LIST_PAGE_SIZE", 100)
        runs = [make_run(workflow, api) for _ in range(40)]

        run_sync.runs_refresh_many(runs)
        clock.shift(timedelta(seconds=2))
        run_sync.runs_refresh_many(runs + [make_run(workflow, api) for _ in range(20)])

        assert [r.url.params["limit"] for r in api.requests] == ["80", "100"]

    def test_a_run_missing_from_the_list_is_fetched_by_id(self, workflow, api, clock):
        run = make_run(workflow, api, upstream_status="running_checks")
        # Its upstream created_at is far earlier than ours (a skewed clock): not in the window.
        api.runs[str(run.cyberdesk_id)]["created_at"] = (NOW - timedelta(hours=1)).isoformat()

        run_sync.runs_refresh_many([run])

        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING_CHECKS
        assert api.calls == {"GET /v1/runs": 1, "GET /v1/runs/{id}": 1}

    def test_runs_that_finish_are_finalized_by_the_worker(
        self, workflow, api, clock, django_capture_on_commit_callbacks
    ):
        run = make_run(workflow, api, upstream_status="success")

        with django_capture_on_commit_callbacks(execute=True):
            run_sync.runs_refresh_many([run])

        task = DBTaskResult.objects.get()
        assert task.task_path == "launcher.tasks.run_finalize_task"
        assert task.args_kwargs["args"] == [run.pk]

    @pytest.mark.parametrize("viewer", [False, True])
    def test_the_news_is_recorded_with_its_source(self, workflow, api, clock, viewer):
        run = make_run(workflow, api, upstream_status="running_checks")

        assert run_sync.runs_refresh_many([run], viewer=viewer, source="batch") == 1
        run_sync.runs_refresh_many(  # the default source: a page's poll
            [make_run(workflow, api, upstream_status="running_checks")], viewer=viewer
        )

        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING_CHECKS
        sources = RunEvent.objects.filter(kind=RunEvent.Kind.STATUS).values_list(
            "source", flat=True
        )
        assert sorted(sources) == ["batch", "poll"]

    def test_a_viewer_tries_nothing_while_an_outage_is_noted_and_the_worker_still_does(
        self, workflow, api, clock
    ):
        run = make_run(workflow, api, upstream_status="running_checks")
        api_outage_note(errors.Unavailable("could not connect"))

        assert run_sync.runs_refresh_many([run], viewer=True) == 0
        assert api.requests == []
        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING

        assert run_sync.runs_refresh_many([run]) == 1  # not a viewer: it may wait on the API
        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING_CHECKS

    @pytest.mark.parametrize("viewer", [False, True])
    def test_stale_after_is_the_claims_window(self, workflow, api, clock, viewer):
        """A caller's own window (the reconciler's, longer than the poll interval) decides
        which runs are due: one refreshed within it is neither claimed nor asked about."""
        run = make_run(workflow, api, upstream_status="running_checks", synced_at=timezone.now())
        clock.shift(run_sync.refresh_interval() + timedelta(seconds=1))

        window = run_sync.refresh_interval() * 10
        assert run_sync.runs_refresh_many([run], stale_after=window, viewer=viewer) == 0
        assert api.requests == []

        assert run_sync.runs_refresh_many([run], viewer=viewer) == 1  # due by the default

    def test_the_api_being_down_changes_nothing(self, workflow, api, clock):
        run = make_run(workflow, api)
        api.fail_with = 500

        assert run_sync.runs_refresh_many([run]) == 0
        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


@pytest.mark.django_db
def test_finalize_fetches_the_history_and_cost_a_list_call_left_out(workflow, api, clock):
    run = make_run(workflow, api, status=RunStatus.SUCCESS)
    api.runs[str(run.cyberdesk_id)]["run_message_history"] = [{"role": "assistant"}]
    api.costs[str(run.cyberdesk_id)] = 0.02

    run_sync.run_finalize(run)

    run.refresh_from_db()
    assert run.message_history == [{"role": "assistant"}]
    assert run.cost_usd == Decimal("0.02")
