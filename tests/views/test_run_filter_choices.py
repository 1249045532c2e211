"""The runs page's filter choices are read once and cached under a version in the database
(`launcher/cache_versions.py`), and so is the filter form rendered with them: whatever they
list that changes — a batch, a workflow, a model, a prompt version or label, a person, a new
run — shows on the very next request, never after a timeout; while nothing changes, a page
reads one version row instead of six lists."""

import html
import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from launcher.cache_versions import RUN_FILTER_CHOICES, cache_version
from launcher.models import Batch, PromptLabel, PromptVersion, Run, RunStatus
from launcher.permissions import LAUNCH_RUN, OPERATORS_GROUP
from launcher.selectors import run_filter_choices
from tests.launch_api import make_model, make_run, make_workflow
from tests.services.test_batches import plan

# Committed for real (not rolled back around each test): the version is bumped as a change
# commits, which is when the next request must see it.
pytestmark = pytest.mark.django_db(transaction=True)
URL = reverse("run_list")
FIXED_OPTIONS = {"", "default", "stored"}  # "All …", "Workflow default", "stored prompt"
_SELECT = re.compile(r'<select name="(\w+)"[^>]*>(.*?)</select>', re.S)
_OPTION = re.compile(r'<option value="([^"]*)"[^>]*>(.*?)</option>', re.S)


@pytest.fixture(autouse=True)
def operators_group(transactional_db):
    """The group the migrations made: a transactional test's clean-up (a flush) empties it."""
    group, _ = Group.objects.get_or_create(name=OPERATORS_GROUP)
    group.permissions.add(
        Permission.objects.get(
            content_type__app_label="launcher", codename=LAUNCH_RUN.split(".")[1]
        )
    )


def offered(client, **params) -> dict[str, dict[str, str]]:
    """{select name: {value: label}} of the page's filter form, as the browser gets it."""
    response = client.get(URL, params)
    assert response.status_code == 200
    return {
        name: {
            html.unescape(value): html.unescape(label)
            for value, label in _OPTION.findall(options)
            if value not in FIXED_OPTIONS
        }
        for name, options in _SELECT.findall(response.content.decode())
    }


def finished_run(workflow, **fields) -> Run:
    return make_run(workflow, status=RunStatus.SUCCESS, **fields)


def test_while_nothing_changes_the_choices_are_read_once(catalog, operator, operator_client):
    finished_run(catalog.workflow, model_option=catalog.model, launched_by=operator)
    first = offered(operator_client)

    with CaptureQueriesContext(connection) as queries:
        again = offered(operator_client)

    assert again == first and first["model"] == {str(catalog.model.pk): "Claude Sonnet"}
    listed = ("launcher_workflow", "launcher_modeloption", "launcher_promptlabel", "launcher_batch")
    assert not [q["sql"] for q in queries if any(f'FROM "{t}"' in q["sql"] for t in listed)]
    assert sum('FROM "launcher_cacheversion"' in q["sql"] for q in queries) == 1


def test_a_new_batch_is_offered_on_the_next_request(catalog, operator, operator_client):
    offered(operator_client)  # cached

    batch = Batch.objects.create(workflow=catalog.workflow, name="Tuesday's invoices")

    assert offered(operator_client)["batch"][str(batch.pk)] == f"Tuesday's invoices (#{batch.pk})"


def test_a_planned_batch_and_the_model_only_its_runs_use_are_offered_at_once(
    catalog, operator, operator_client
):
    """The planner bulk-inserts its runs (no save hook): the batch's own save, in the same
    transaction, is what bumps the version."""
    newcomer = make_model("Newcomer")
    assert str(newcomer.pk) not in offered(operator_client)["model"]  # cached without it

    batch = plan(catalog, operator, rows=2, models=(newcomer,))

    now = offered(operator_client)
    assert str(batch.pk) in now["batch"]
    assert now["model"][str(newcomer.pk)] == "Newcomer"
    assert now["launched_by"][str(operator.pk)] == operator.username


def test_a_new_workflow_is_offered_on_the_next_request(catalog, operator_client):
    offered(operator_client)

    workflow = make_workflow(name="Claims intake")

    assert offered(operator_client)["workflow"][str(workflow.pk)] == "Claims intake"


def test_a_renamed_batch_and_workflow_show_their_new_names_on_the_next_request(
    catalog, operator_client
):
    batch = Batch.objects.create(workflow=catalog.workflow, name="Old name")
    offered(operator_client)

    batch.name = "New name"
    batch.save(update_fields=["name"])
    catalog.workflow.name = "Invoices (renamed)"
    catalog.workflow.save()

    now = offered(operator_client)
    assert now["batch"][str(batch.pk)] == f"New name (#{batch.pk})"
    assert now["workflow"][str(catalog.workflow.pk)] == "Invoices (renamed)"


def test_a_run_with_a_new_model_version_label_and_person_is_offered_on_the_next_request(
    catalog, operator_client
):
    finished_run(catalog.workflow)
    before = offered(operator_client)
    assert before["model"] == before["prompt"] == before["label"] == before["launched_by"] == {}
    person = User.objects.create_user("maria")
    newest = PromptVersion.objects.create(workflow=catalog.workflow, number=3, text="v3")
    PromptLabel.objects.create(workflow=catalog.workflow, name="staging", version=newest)
    assert offered(operator_client)["model"] == {}  # nothing new is *used* yet

    finished_run(
        catalog.workflow,
        model_option=catalog.model,
        prompt_mode="label",
        prompt_label="staging",
        prompt_version=newest,
        launched_by=person,
    )

    after = offered(operator_client)
    assert after["model"] == {str(catalog.model.pk): "Claude Sonnet"}
    assert after["prompt"] == {str(newest.pk): "Invoice intake v3"}
    assert after["label"] == {"staging": "staging"}
    assert after["launched_by"] == {str(person.pk): "maria"}


def test_a_renamed_person_shows_the_new_name_but_a_login_bumps_nothing(
    catalog, operator, operator_client
):
    finished_run(catalog.workflow, launched_by=operator)
    offered(operator_client)
    version = cache_version(RUN_FILTER_CHOICES)

    operator_client.force_login(operator)  # saves last_login only

    assert cache_version(RUN_FILTER_CHOICES) == version
    operator.username = "operator-renamed"
    operator.save()
    assert offered(operator_client)["launched_by"][str(operator.pk)] == "operator-renamed"


def test_a_deleted_batch_is_no_longer_offered(catalog, operator_client):
    batch = Batch.objects.create(workflow=catalog.workflow, name="Gone soon")
    pk = str(batch.pk)
    assert pk in offered(operator_client)["batch"]

    batch.delete()

    assert pk not in offered(operator_client)["batch"]


def test_the_chosen_filters_are_selected_in_the_cached_form(catalog, operator_client):
    finished_run(catalog.workflow, model_option=catalog.model)
    offered(operator_client)  # the unfiltered form, cached

    page = operator_client.get(URL, {"model": str(catalog.model.pk)}).content.decode()

    assert f'<option value="{catalog.model.pk}" selected>Claude Sonnet</option>' in page
    assert 'href="/runs/">Clear filters</a>' in page
    assert "Clear filters" not in operator_client.get(URL).content.decode()


def test_a_chosen_batch_older_than_the_offered_ones_is_added_without_keeping_it(catalog):
    old = Batch.objects.create(workflow=catalog.workflow, name="Old")
    Batch.objects.bulk_create(
        [Batch(workflow=catalog.workflow, name=f"Newer {n}") for n in range(100)]
    )
    assert old.pk not in dict(run_filter_choices().batches)

    with_old = run_filter_choices(batch=old.pk)

    assert dict(with_old.batches)[old.pk] == f"Old (#{old.pk})"
    assert old.pk not in dict(run_filter_choices().batches)  # not kept in the cached copy
