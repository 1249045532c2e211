"""A canary against the real sandbox over HTTP, under a controlled clock: launches of
`production` split between the arms, the candidate (a prompt the sandbox always fails) loses,
and the reconciler's pass stops the canary by itself with the reason recorded."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission

from launcher.cyberdesk import close_client, get_client
from launcher.models import Canary, PromptLabel, Run, RunStatus, Workflow
from launcher.sandbox.seed import WORKFLOW_HELLO, seed_demo_data
from launcher.services.canary import CANDIDATE, CONTROL, canary_arm_for, canary_start
from launcher.services.prompts import prompt_version_create
from launcher.services.reconcile import runs_reconcile
from launcher.services.runs import run_launch
from launcher.services.workflows import workflows_sync

pytestmark = pytest.mark.django_db(transaction=True)

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# The sandbox's "failing" scenario, asked for by the candidate's own wording.
FAILING = "\n[sandbox failure_rate=1]"


@pytest.fixture
def sandbox(live_server, settings):
    seed_demo_data()
    settings.CYBERDESK_BASE_URL = live_server.url + "/sandbox"
    settings.CYBERDESK_API_KEY = settings.SANDBOX_API_KEY
    settings.SANDBOX_TIME_SCALE = 0.5
    yield get_client()
    close_client()


@pytest.fixture
def release_manager(django_user_model):
    user = django_user_model.objects.create_user("ana", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="launcher", codename__in=["move_production_label", "launch_run"]
        )
    )
    return django_user_model.objects.get(pk=user.pk)


def test_a_worse_candidate_stops_by_itself_in_a_reconciler_pass(sandbox, release_manager):
    keys = [uuid.uuid5(uuid.NAMESPACE_URL, f"canary-run-{n}") for n in range(30)]
    assert sum(canary_arm_for(key, 50) == CANDIDATE for key in keys) >= 10

    with time_machine.travel(START, tick=False) as clock:
        workflows_sync()
        workflow = Workflow.objects.get(pk=WORKFLOW_HELLO)
        v1 = prompt_version_create(workflow=workflow, text=workflow.main_prompt)
        v2 = prompt_version_create(workflow=workflow, text=workflow.main_prompt + FAILING)
        production = PromptLabel.objects.create(workflow=workflow, name="production", version=v1)
        canary = canary_start(
            label=production, candidate=v2, share_percent=50, user=release_manager
        )
        for key in keys:
            run_launch(
                user=release_manager,
                workflow=workflow,
                model_option=None,
                prompt_choice="label:production",
                input_values={},
                idempotency_key=key,
            )
        # Nothing has finished yet: the pass takes no look.
        runs_reconcile()
        canary.refresh_from_db()
        assert canary.state == Canary.State.RUNNING and canary.looks == []

        clock.shift(timedelta(minutes=2))  # every run has ended in the sandbox by now
        runs_reconcile()

    canary.refresh_from_db()
    assert canary.state == Canary.State.STOPPED
    assert canary.end_reason.startswith("Stopped by itself at look 1")
    assert canary.ended_at == START + timedelta(minutes=2)
    runs = list(Run.objects.filter(canary=canary))
    assert {run.canary_arm for run in runs} == {CANDIDATE, CONTROL}
    for run in runs:
        assert run.canary_arm == canary_arm_for(run.idempotency_key, 50)
        if run.canary_arm == CANDIDATE:
            assert run.prompt_version == v2 and run.status in (
                RunStatus.ERROR,
                RunStatus.TASK_FAILED,
            )
        else:
            assert run.prompt_version == v1 and run.status == RunStatus.SUCCESS
    look = canary.looks[0]
    assert look["candidate"][0] == 0 and look["control"][0] == look["control"][1]
    assert look["p_value"] < look["alpha"] == 0.025
