"""The driver task: scheduled when runs are created, one pending instance, stops when idle."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from launcher.sandbox import seed
from launcher.sandbox.tasks import driver_ensure_scheduled, sandbox_drive

pytestmark = pytest.mark.django_db


def _pending():
    return DBTaskResult.objects.filter(task_path=sandbox_drive.module_path, status="READY")


def test_creating_a_run_schedules_one_driver_for_its_first_transition(
    api, clock, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)}).json()
    with django_capture_on_commit_callbacks(execute=True):
        api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)})

    [driver] = _pending()
    assert driver.run_after <= timezone.now() + timedelta(seconds=5)
    assert run["status"] == "scheduling"


def test_the_driver_moves_runs_then_reschedules_itself_until_nothing_is_pending(api, clock):
    run = api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)}).json()

    clock.shift(3)
    sandbox_drive.call()
    assert api.get(f"runs/{run['id']}").json()["status"] == "running"
    assert _pending().count() == 1

    _pending().delete()
    clock.shift(120)
    sandbox_drive.call()
    assert not _pending().exists()


def test_an_earlier_due_moment_pulls_the_pending_driver_forward(api, clock):
    DBTaskResult.objects.all().delete()
    sandbox_drive.using(run_after=timezone.now() + timedelta(hours=2)).enqueue()

    api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)})
    driver_ensure_scheduled()

    [driver] = _pending()
    assert driver.run_after < timezone.now() + timedelta(seconds=5)


def test_nothing_is_scheduled_when_nothing_is_pending(demo):
    driver_ensure_scheduled()

    assert not _pending().exists()


def test_sandbox_tick_command_runs_one_pass(api, clock, capsys):
    run = api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)}).json()
    clock.shift(120)

    call_command("sandbox_tick")

    assert "nothing pending" in capsys.readouterr().out
    assert api.get(f"runs/{run['id']}").json()["status"] == "success"
