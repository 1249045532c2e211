"""A batch end to end against the real sandbox over HTTP: the form plans it, the task sends it
(rows × models), the API has exactly those runs, and sending again changes nothing."""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from launcher import tasks
from launcher.cyberdesk import close_client, get_client
from launcher.models import Batch, Submission
from launcher.sandbox.seed import MODEL_SONNET, WORKFLOW_TIMESHEET, seed_demo_data

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = (
    "hours,project,week_ending\n"
    "38,Apollo,2025-03-07\n"
    "40,Borealis,2025-03-14\n"
    "99,Cassini,2025-03-21\n"  # over the schema's maximum: shown, then skipped
)


@pytest.fixture
def sandbox(live_server, settings):
    seed_demo_data()
    settings.CYBERDESK_BASE_URL = live_server.url + "/sandbox"
    settings.CYBERDESK_API_KEY = settings.SANDBOX_API_KEY
    settings.SANDBOX_WEBHOOK_URL = live_server.url + "/webhooks/cyberdesk/"
    # The in-memory test database cannot take the sandbox's writes and many senders at once.
    settings.BATCH_CONCURRENCY = 1
    yield get_client()
    close_client()


@pytest.fixture
def operator_client(django_user_model):
    # Not the shared persona: a transactional test may run after another one emptied the
    # tables, groups from migrations included.
    user = django_user_model.objects.create_user(username="batch-operator", password="pw")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="launcher", codename="launch_run")
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_a_batch_reaches_the_sandbox_once_per_planned_run(sandbox, operator_client):
    operator_client.get(reverse("batch_new"))  # syncs the mirror and the catalog
    base = {
        "csrfmiddlewaretoken": operator_client.cookies["csrftoken"].value,
        "token": str(uuid.uuid4()),
        "workflow": WORKFLOW_TIMESHEET,
        "models": ["default", MODEL_SONNET],
        "prompts": ["stored"],
        "source": "rows",
        "rows_text": ROWS,
    }
    preview = operator_client.post(reverse("batch_new"), {**base, "preview": "1"})
    assert "Preview: 4 runs" in preview.content.decode()

    launched = operator_client.post(
        reverse("batch_new"),
        {**base, "launch": "1", "previewed": preview.context["form"].data["previewed"]},
    )
    assert launched.status_code == 302
    batch = Batch.objects.get()

    result = tasks.batch_submit_task.call(batch.pk)
    again = tasks.batch_submit_task.call(batch.pk)

    assert result["accepted"] == 4 and again["accepted"] == 0
    runs = list(batch.runs.all())
    assert {run.submission for run in runs} == {Submission.ACCEPTED}
    upstream = sandbox.list_runs(
        workflow_id=WORKFLOW_TIMESHEET, fields=["input_values", "model_metadata"]
    )
    ours = {run.cyberdesk_id for run in runs}
    assert {item.id for item in upstream.items} >= ours and len(ours) == 4
    models = {
        (item.model_metadata.main_agent_model_id if item.model_metadata else None)
        for item in upstream.items
        if item.id in ours
    }
    assert str(MODEL_SONNET) in {str(m) for m in models}
    page = operator_client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "of 4 finished" in page
