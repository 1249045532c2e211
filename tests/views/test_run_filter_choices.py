"""The runs page's filter choices are read once and cached under a version in the database
(`launcher/cache_versions.py`): whatever they list that changes — a batch, a workflow, a model,
a prompt version or label, a person, a new run — shows on the very next request, never after a
timeout; while nothing changes, a page reads one version row instead of six lists."""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from launcher.cache_versions import RUN_FILTER_CHOICES, cache_version
from launcher.models import Batch, PromptLabel, PromptVersion, Run, RunStatus
from tests.launch_api import make_model, make_run, make_workflow
from tests.services.test_batches import plan

pytestmark = pytest.mark.django_db
URL = reverse("run_list")


def choices(client):
    response = client.get(URL)
    assert response.status_code == 200
    return response.context["choices"]


def finished_run(workflow, **fields) -> Run:
    return make_run(workflow, status=RunStatus.SUCCESS, **fields)


def test_while_nothing_changes_the_choices_are_read_once(catalog, operator, operator_client):
    finished_run(catalog.workflow, model_option=catalog.model, launched_by=operator)
    first = choices(operator_client)

    with CaptureQueriesContext(connection) as queries:
        again = choices(operator_client)

    assert again == first
    listed = ("launcher_workflow", "launcher_modeloption", "launcher_promptlabel", "launcher_batch")
    assert not [q["sql"] for q in queries if any(f'FROM "{t}"' in q["sql"] for t in listed)]
    assert sum('FROM "launcher_cacheversion"' in q["sql"] for q in queries) == 1


def test_a_new_batch_is_offered_on_the_next_request(catalog, operator, operator_client):
    choices(operator_client)  # cached

    batch = Batch.objects.create(workflow=catalog.workflow, name="Tuesday's invoices")

    assert (batch.pk, f"Tuesday's invoices (#{batch.pk})") in choices(operator_client).batches


def test_a_planned_batch_and_the_model_only_its_runs_use_are_offered_at_once(
    catalog, operator, operator_client
):
    """The planner bulk-inserts its runs (no save hook): the batch's own save, in the same
    transaction, is what bumps the version."""
    newcomer = make_model("Newcomer")
    assert newcomer.pk not in dict(choices(operator_client).models)  # cached without it

    batch = plan(catalog, operator, rows=2, models=(newcomer,))

    offered = choices(operator_client)
    assert batch.pk in dict(offered.batches)
    assert dict(offered.models)[str(newcomer.pk)] == "Newcomer"
    assert operator.pk in dict(offered.users)


def test_a_new_workflow_is_offered_on_the_next_request(catalog, operator_client):
    choices(operator_client)

    workflow = make_workflow(name="Claims intake")

    assert (str(workflow.pk), "Claims intake") in choices(operator_client).workflows


def test_a_renamed_batch_and_workflow_show_their_new_names_on_the_next_request(
    catalog, operator_client
):
    batch = Batch.objects.create(workflow=catalog.workflow, name="Old name")
    choices(operator_client)

    batch.name = "New name"
    batch.save(update_fields=["name"])
    catalog.workflow.name = "Invoices (renamed)"
    catalog.workflow.save()

    offered = choices(operator_client)
    assert dict(offered.batches)[batch.pk] == f"New name (#{batch.pk})"
    assert dict(offered.workflows)[str(catalog.workflow.pk)] == "Invoices (renamed)"


def test_a_run_with_a_new_model_version_label_and_person_is_offered_on_the_next_request(
    catalog, operator_client
):
    finished_run(catalog.workflow)
    before = choices(operator_client)
    assert before.models == [] and before.prompt_versions == [] and before.users == []
    person = User.objects.create_user("maria")
    newest = PromptVersion.objects.create(workflow=catalog.workflow, number=3, text="v3")
    PromptLabel.objects.create(workflow=catalog.workflow, name="staging", version=newest)
    assert choices(operator_client).models == []  # nothing new is *used* yet

    finished_run(
        catalog.workflow,
        model_option=catalog.model,
        prompt_mode="label",
        prompt_label="staging",
        prompt_version=newest,
        launched_by=person,
    )

    after = choices(operator_client)
    assert after.models == [(str(catalog.model.pk), "Claude Sonnet")]
    assert after.prompt_versions == [(str(newest.pk), "Invoice intake v3")]
    assert after.labels == ["staging"]
    assert after.users == [(person.pk, "maria")]


def test_a_renamed_person_shows_the_new_name_but_a_login_bumps_nothing(
    catalog, operator, operator_client
):
    finished_run(catalog.workflow, launched_by=operator)
    choices(operator_client)
    version = cache_version(RUN_FILTER_CHOICES)

    operator_client.force_login(operator)  # saves last_login only

    assert cache_version(RUN_FILTER_CHOICES) == version
    operator.username = "operator-renamed"
    operator.save()
    assert dict(choices(operator_client).users)[operator.pk] == "operator-renamed"


def test_a_deleted_batch_is_no_longer_offered(catalog, operator_client):
    batch = Batch.objects.create(workflow=catalog.workflow, name="Gone soon")
    pk = batch.pk
    assert pk in dict(choices(operator_client).batches)

    batch.delete()

    assert pk not in dict(choices(operator_client).batches)


def test_a_chosen_batch_older_than_the_offered_ones_is_added_without_rereading_the_rest(
    catalog, operator_client, settings
):
    old = Batch.objects.create(workflow=catalog.workflow, name="Old")
    for n in range(100):
        Batch.objects.create(workflow=catalog.workflow, name=f"Newer {n}")
    assert old.pk not in dict(choices(operator_client).batches)

    response = operator_client.get(URL, {"batch": old.pk})

    assert dict(response.context["choices"].batches)[old.pk] == f"Old (#{old.pk})"
    assert old.pk not in dict(choices(operator_client).batches)  # not kept in the cached copy
