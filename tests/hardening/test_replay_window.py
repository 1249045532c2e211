"""Issue 15 item 10: the reconciler re-sends a launch whose answer was lost only within
IDEMPOTENCY_REPLAY_WINDOW (default 1 h); past it, the run is looked up in the workflow's run
list (matched on model, prompt hash and inputs), never sent again."""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings

from launcher.models import Run, RunStatus, Submission, Workflow
from launcher.services import reconcile
from tests.fake_cyberdesk import FakeCyberdesk, upstream_run
from tests.services.test_reconcile import creates, unsent_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


@pytest.fixture
def workflow(db):
    return Workflow.objects.create(id=uuid.uuid4(), name="Invoice intake")


def _twin(api, workflow, run, *, after: timedelta, **fields):
    carried = {"input_values": run.input_values, **fields}
    return api.add(
        upstream_run(
            workflow_id=workflow.id, status="running", created_at=run.created_at + after, **carried
        )
    )


def test_the_window_defaults_to_one_hour():
    assert timedelta(hours=1) == django_settings.IDEMPOTENCY_REPLAY_WINDOW
    assert reconcile.replay_window() == timedelta(hours=1)


def test_within_the_window_the_run_is_re_sent_with_its_key(workflow, api, clock):
    run = unsent_run(workflow)
    clock.shift(timedelta(minutes=59))

    assert reconcile.runs_reconcile().resubmitted == 1
    assert creates(api) == 1
    assert api.creates[0].headers["Idempotency-Key"] == str(run.idempotency_key)


def test_past_the_window_a_run_the_api_never_got_is_never_re_sent(workflow, api, clock):
    """The 20 h of before assumed the API keeps keys that long; past one hour nothing is sent."""
    run = unsent_run(workflow)
    clock.shift(timedelta(hours=1, minutes=1))

    report = reconcile.runs_reconcile()

    assert creates(api) == 0
    assert api.calls["GET /v1/runs"] == 1  # looked up instead
    assert report.rejected == 1
    stored = Run.objects.get(pk=run.pk)
    assert (stored.submission, stored.status) == (Submission.REJECTED, RunStatus.REJECTED)
    assert "older than the idempotency replay window" in stored.submission_error


def test_past_the_window_the_lookup_finds_the_run_a_late_re_send_created(workflow, api, clock):
    run = unsent_run(workflow)
    # Re-sent 50 minutes in (inside the window): the API created it then.
    twin = _twin(api, workflow, run, after=timedelta(minutes=50))
    clock.shift(timedelta(hours=2))

    assert reconcile.runs_reconcile().found == 1
    assert creates(api) == 0
    assert str(Run.objects.get(pk=run.pk).cyberdesk_id) == twin["id"]


def test_the_lookup_matches_inputs_and_prompt(workflow, api, clock):
    run = unsent_run(workflow)  # inputs {"invoice": "INV-7"}, the stored prompt
    _twin(api, workflow, run, after=timedelta(seconds=5), input_values={"invoice": "INV-8"})
    _twin(api, workflow, run, after=timedelta(seconds=6), main_prompt="Another prompt")
    clock.shift(timedelta(hours=3))

    reconcile.runs_reconcile()

    assert creates(api) == 0
    assert Run.objects.get(pk=run.pk).cyberdesk_id is None


def test_the_window_is_a_setting(workflow, api, clock, settings):
    settings.IDEMPOTENCY_REPLAY_WINDOW = timedelta(minutes=10)
    unsent_run(workflow)
    clock.shift(timedelta(minutes=11))

    reconcile.runs_reconcile()

    assert creates(api) == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600), ("3600s", 3600), ("90m", 5400), ("1h", 3600)]
)
def test_the_variable_reads_seconds_or_a_unit(text, seconds):
    from launcher.settings import _duration

    assert _duration(text) == timedelta(seconds=seconds)


def test_env_example_documents_the_variable():
    text = (django_settings.BASE_DIR / ".env.example").read_text()
    assert "IDEMPOTENCY_REPLAY_WINDOW=1h" in text
