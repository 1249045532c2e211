"""The launch page's query counts, pinned: the page, the htmx refresh of `#launch-details`
(which also carries the prompt preview: it has no URL of its own), the no-JavaScript refresh
and "launch again" — each the same whatever the number of workflows and prompt versions.

Every count is the steady state (the workflow mirror and the model catalog are fresh, so no
upstream call happens inside the measured block) unless the test says it measures a sync.

The first four queries of every request are the session, the user, and the user's and the
groups' permissions (`permission_required(LAUNCH_RUN)`).
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from launcher.models import (
    ModelOption,
    PromptLabel,
    PromptMode,
    PromptVersion,
    RunStatus,
    Workflow,
)
from tests.fake_cyberdesk import FakeCyberdesk, serve
from tests.launch_api import make_run, make_workflow

pytestmark = pytest.mark.django_db
URL = reverse("launch")
HTMX = {"HX-Request": "true"}

# session, user, the permission; the mirror (exists, its age), the catalog's age;
# workflows; offered models, the default model's name; prompt versions, labels (the picker);
# the default choice (is there a production label), the chosen label with its version.
PAGE_QUERIES = 13


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def refresh_data(client, catalog, **data) -> dict:
    return {
        "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        "refresh": "1",
        "workflow": str(catalog.workflow.pk),
        "model": "",
        "prompt": "label:production",
        "input:customer_id": "c-100",
        **data,
    }


def more_of_everything(catalog, extra: int) -> None:
    """`extra` more workflows (in the picker) and prompt versions and labels (in the prompt
    picker) — none of which may cost a query of its own."""
    for n in range(extra):
        make_workflow(name=f"Workflow {n}")
        PromptVersion.objects.create(
            workflow=catalog.workflow, number=3 + n, text=f"v{3 + n}: {{customer_id}}"
        )
    for n in range(extra):
        PromptLabel.objects.create(workflow=catalog.workflow, name=f"label-{n}", version=catalog.v2)


@pytest.mark.parametrize("extra", [0, 12])
def test_the_page_costs_the_same_however_many_workflows_and_versions(
    catalog, operator_client, api, django_assert_num_queries, extra
):
    more_of_everything(catalog, extra)
    operator_client.get(URL)  # warm the session

    with django_assert_num_queries(PAGE_QUERIES):
        response = operator_client.get(URL)

    assert response.status_code == 200
    assert len(response.context["workflows"]) == 1 + extra
    assert api.requests == []  # a fresh mirror and catalog: no upstream call


def test_another_workflow_by_its_id_costs_the_same(
    catalog, operator_client, api, django_assert_num_queries
):
    other = make_workflow(name="Claims")
    operator_client.get(URL)

    # The same as the page, less the chosen label: the other workflow has no versions, so
    # the default choice is the stored prompt (nothing to resolve).
    with django_assert_num_queries(PAGE_QUERIES - 1):
        response = operator_client.get(URL, {"workflow": str(other.pk)})

    assert response.context["workflow"] == other
    assert api.requests == []


@pytest.mark.parametrize("extra", [0, 12])
def test_the_htmx_refresh_of_the_details_costs_the_same_as_the_page(
    catalog, operator_client, api, django_assert_num_queries, extra
):
    more_of_everything(catalog, extra)
    operator_client.get(URL)

    with django_assert_num_queries(PAGE_QUERIES):
        response = operator_client.post(URL, refresh_data(operator_client, catalog), headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="launch-details"' in html and "<html" not in html
    assert "Prompt preview — production (v1)" in html
    assert api.requests == []


def test_the_prompt_preview_of_a_chosen_version_costs_the_same(
    catalog, operator_client, api, django_assert_num_queries
):
    operator_client.get(URL)

    # The chosen version is read instead of the chosen label.
    with django_assert_num_queries(PAGE_QUERIES):
        response = operator_client.post(
            URL,
            refresh_data(operator_client, catalog, prompt=f"version:{catalog.v2.pk}"),
            headers=HTMX,
        )

    assert "Prompt preview — v2" in response.content.decode()


def test_the_stored_prompt_preview_costs_one_query_less(
    catalog, operator_client, api, django_assert_num_queries
):
    operator_client.get(URL)

    # The stored prompt is the mirrored workflow's own: nothing to resolve.
    with django_assert_num_queries(PAGE_QUERIES - 1):
        response = operator_client.post(
            URL, refresh_data(operator_client, catalog, prompt="stored"), headers=HTMX
        )

    assert response.status_code == 200 and 'id="launch-details"' in response.content.decode()


def test_the_refresh_without_javascript_renders_the_whole_page_at_the_same_cost(
    catalog, operator_client, api, django_assert_num_queries
):
    operator_client.get(URL)

    with django_assert_num_queries(PAGE_QUERIES):
        response = operator_client.post(URL, refresh_data(operator_client, catalog))

    assert response.status_code == 200 and "<html" in response.content.decode()


def test_launch_again_costs_two_queries_more_than_the_page(
    catalog, operator_client, api, django_assert_num_queries
):
    run = make_run(
        catalog.workflow,
        status=RunStatus.SUCCESS,
        model_option=catalog.model,
        prompt_mode=PromptMode.PINNED,
        prompt_version=catalog.v2,
        input_values={"customer_id": "c-100", "age": 42},
    )
    operator_client.get(URL)

    # + the run (with its model and version) and its workflow's production label; the form
    # then resolves the run's version where the page resolves the production label.
    with django_assert_num_queries(PAGE_QUERIES + 2):
        response = operator_client.get(URL, {"again": str(run.pk)})

    assert response.status_code == 200
    assert response.context["again"].run == run
    assert api.requests == []


# --- A stale mirror and catalog: the sync inside the request ------------------------------------


@pytest.fixture
def catalog_api(catalog):
    """The catalog's workflow and models as the API lists them."""
    fake = FakeCyberdesk()
    fake.add_workflow(id=str(catalog.workflow.pk), name=catalog.workflow.name, model_metadata=None)
    for option in (catalog.model, catalog.disabled_model):
        fake.add_model(id=str(option.pk), name=option.name, is_system_default=False)
    with fake.serve():
        yield fake


def test_a_stale_mirror_and_catalog_are_synced_once_at_a_pinned_cost(
    catalog, operator_client, catalog_api, django_assert_num_queries
):
    operator_client.get(URL)
    long_ago = timezone.now() - timedelta(days=1)
    Workflow.objects.update(synced_at=long_ago)
    ModelOption.objects.update(synced_at=long_ago)
    catalog_api.requests.clear()

    # The page's 13, plus the workflow sync — its transaction and update_or_create's are two
    # savepoints here (the test runs in a transaction; in production the outer one is a
    # BEGIN/COMMIT, which no backend logs as a query): savepoint ×2, select for update,
    # update, release ×2 (the saved name's bump of the runs filter choices' version,
    # `launcher/cache_versions.py`, is one upsert after the commit, which a test's transaction
    # never reaches) — and the catalog sync: savepoint, the locked read, one update per listed
    # model (2), release. Both grow with what the API lists, once per max age. And the synced
    # workflow has an unaddressed error naming a run: one query looks for that run.
    with django_assert_num_queries(PAGE_QUERIES + 6 + 5 + 1):
        response = operator_client.get(URL)

    assert response.status_code == 200
    paths = sorted(r.url.path.removeprefix("/sandbox") for r in catalog_api.requests)
    assert paths == ["/v1/model-configurations", "/v1/workflows"]
    # ...and the next request is back to the steady state, with no call (plus the one query
    # for the errored run, while the API reports the error).
    catalog_api.requests.clear()
    with django_assert_num_queries(PAGE_QUERIES + 1):
        operator_client.get(URL)
    assert catalog_api.requests == []
