"""GET /v1/runs: every filter of spec §3.8, `fields` projection, sort modes, `include`."""

import uuid
from datetime import timedelta

import pytest

from launcher.sandbox import seed
from launcher.sandbox.params import parse_datetime
from launcher.sandbox.payloads import RUN_BASE_FIELDS

pytestmark = pytest.mark.django_db

LONG_ENOUGH = 120


@pytest.fixture
def runs(api, clock):
    """Two finished hello runs, then (a minute later) an eligibility run still scheduling."""
    hello = [
        api.post(
            "runs",
            {"workflow_id": str(seed.WORKFLOW_HELLO), "session_alias": f"alias-{n}"},
        ).json()
        for n in range(2)
    ]
    clock.shift(LONG_ENOUGH)
    eligibility = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_ELIGIBILITY),
            "input_values": {
                "patient_name": "Grace Hopper",
                "date_of_birth": "1906-12-09",
                "payer": "Cigna",
            },
        },
    ).json()
    return {"hello": hello, "eligibility": eligibility}


def _ids(response):
    return [item["id"] for item in response.json()["items"]]


def test_it_filters_by_workflow_and_status(api, runs):
    by_workflow = api.get("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)})
    scheduling = api.get("runs", {"status": "scheduling"})

    assert sorted(_ids(by_workflow)) == sorted(run["id"] for run in runs["hello"])
    assert _ids(scheduling) == [runs["eligibility"]["id"]]
    assert by_workflow.json()["total"] == 2


def test_it_refuses_an_unknown_status_or_sort_mode(api, runs):
    assert api.get("runs", {"status": "done"}).status_code == 422
    assert api.get("runs", {"sort_mode": "newest"}).status_code == 422


def test_it_filters_by_creation_time_inclusively(api, runs, clock):
    created = runs["eligibility"]["created_at"]

    response = api.get("runs", {"created_at_from": created, "created_at_to": created})

    assert _ids(response) == [runs["eligibility"]["id"]]


def test_it_accepts_plus_offsets_in_query_datetimes(api, runs):
    start = parse_datetime(runs["eligibility"]["created_at"]) - timedelta(seconds=1)

    response = api.get("runs", {"created_at_from": start.isoformat()})

    assert response.status_code == 200
    assert _ids(response) == [runs["eligibility"]["id"]]


def test_it_searches_inputs_outputs_and_aliases(api, runs):
    by_input = api.get("runs", {"search": "grace HOPPER"})
    by_alias = api.get("runs", {"search": "alias-1"})
    by_output = api.get("runs", {"search": "Completed the workflow"})

    assert _ids(by_input) == [runs["eligibility"]["id"]]
    assert _ids(by_alias) == [runs["hello"][1]["id"]]
    assert sorted(_ids(by_output)) == sorted(run["id"] for run in runs["hello"])


def test_deep_search_also_looks_in_the_message_history(api, runs):
    shallow = api.get("runs", {"search": "then SAVE the file"})
    deep = api.get("runs", {"search": "then SAVE the file", "deep_search": "true"})

    assert shallow.json()["total"] == 0
    assert deep.json()["total"] == 2


def test_fields_keep_the_base_keys_plus_the_requested_ones(api, runs):
    response = api.get("runs", [("fields", "started_at"), ("fields", "ended_at")])

    for item in response.json()["items"]:
        assert set(item) == {*RUN_BASE_FIELDS, "started_at", "ended_at"}


def test_an_unknown_field_is_a_422(api, runs):
    response = api.get("runs", {"fields": "secret_sauce"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "fields", 0]


def test_without_fields_items_are_full_runs(api, runs):
    item = api.get("runs").json()["items"][0]

    assert "run_message_history" in item and "input_values" in item


def test_activity_sort_puts_active_runs_first(api, runs):
    response = api.get("runs", {"sort_mode": "activity"})

    assert _ids(response)[0] == runs["eligibility"]["id"]


def test_created_at_desc_is_strictly_newest_first(api, runs):
    items = api.get("runs", {"sort_mode": "created_at_desc"}).json()["items"]

    created = [item["created_at"] for item in items]
    assert created == sorted(created, reverse=True)


def test_include_lists_each_related_resource_once(api, runs):
    response = api.get(
        "runs", {"include": "workflow,machine", "workflow_id": str(seed.WORKFLOW_HELLO)}
    )

    included = response.json()["included"]
    keys = [(entry["type"], entry["id"]) for entry in included]
    assert len(keys) == len(set(keys))
    assert ("workflow", str(seed.WORKFLOW_HELLO)) in keys
    assert any(kind == "machine" for kind, _ in keys)


def test_an_unknown_include_is_a_422(api, runs):
    assert api.get("runs", {"include": "workflow,owner"}).status_code == 422


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": "0"}, ["query", "limit"]),
        ({"limit": "1001"}, ["query", "limit"]),
        ({"skip": "-1"}, ["query", "skip"]),
        ({"workflow_id": "abc"}, ["query", "workflow_id"]),
        ({"created_at_from": "yesterday"}, ["query", "created_at_from"]),
        ({"deep_search": "maybe"}, ["query", "deep_search"]),
    ],
)
def test_bad_query_values_are_422s_naming_the_parameter(api, params, loc):
    response = api.get("runs", params)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_limit_1000_is_allowed(api, runs):
    assert api.get("runs", {"limit": "1000"}).json()["limit"] == 1000


def test_an_unknown_run_is_a_404(api):
    assert api.get(f"runs/{uuid.uuid4()}").status_code == 404
    assert api.get(f"runs/{uuid.uuid4()}/llm-costs").status_code == 404
