"""GET/PATCH /v1/workflows: pagination, filters, includes, the string input_schema, versions."""

import json
import uuid

import pytest

from launcher.sandbox import seed
from launcher.sandbox.models import Workflow

pytestmark = pytest.mark.django_db


def test_it_lists_workflows_in_the_pagination_envelope_newest_update_first(api):
    body = api.get("workflows").json()

    assert set(body) >= {"items", "total", "skip", "limit"}
    assert (body["total"], body["skip"], body["limit"]) == (6, 0, 100)
    updated = [item["updated_at"] for item in body["items"]]
    assert updated == sorted(updated, reverse=True)


def test_it_pages_with_skip_and_limit_and_counts_every_match(api):
    body = api.get("workflows", {"skip": 2, "limit": 3}).json()

    assert len(body["items"]) == 3
    assert body["total"] == 6
    everything = [item["id"] for item in api.get("workflows").json()["items"]]
    assert [item["id"] for item in body["items"]] == everything[2:5]


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_it_refuses_a_limit_out_of_range_with_a_list_shaped_422(api, limit):
    response = api.get("workflows", {"limit": limit})

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["query", "limit"]
    assert problem["msg"] and problem["type"]


def test_it_serialises_input_schema_as_a_json_string(api):
    workflow = api.get(f"workflows/{seed.WORKFLOW_ELIGIBILITY}").json()

    assert isinstance(workflow["input_schema"], str)
    assert "$portal_password" in json.loads(workflow["input_schema"])["properties"]


def test_it_searches_names_case_insensitively(api):
    body = api.get("workflows", {"search": "INVOICE"}).json()

    assert [item["name"] for item in body["items"]] == ["Reconcile invoice totals"]


def test_it_filters_by_tags_requiring_all_of_them(api):
    finance, production = seed.seed_id("tag:finance"), seed.seed_id("tag:production")

    body = api.get("workflows", {"tag_ids": f"{finance},{production}"}).json()

    assert [item["name"] for item in body["items"]] == ["Export monthly report"]


def test_it_includes_tags_only_when_asked_and_lists_them_once_in_included(api):
    plain = api.get("workflows").json()
    with_tags = api.get("workflows", {"include": "tags"}).json()

    assert "tags" not in plain["items"][0]
    report = next(i for i in with_tags["items"] if i["name"] == "Export monthly report")
    assert {tag["name"] for tag in report["tags"]} == {"Finance", "Production"}
    included_ids = [entry["id"] for entry in with_tags["included"]]
    assert len(included_ids) == len(set(included_ids)) == 5
    assert {entry["type"] for entry in with_tags["included"]} == {"tag"}


def test_a_workflow_read_includes_tags_and_checks_by_default(api):
    workflow = api.get(f"workflows/{seed.WORKFLOW_TIMESHEET}").json()

    assert [tag["name"] for tag in workflow["tags"]] == ["Operations"]
    assert workflow["post_run_checks"][0]["name"] == "Confirmation number captured"
    assert "included" in workflow


def test_the_demo_workflow_with_an_unaddressed_error_says_so(api):
    workflow = api.get(f"workflows/{seed.WORKFLOW_REPORT}").json()

    assert workflow["workflow_metadata"]["has_unaddressed_error"] is True


def test_an_unknown_workflow_is_a_404_and_a_malformed_id_a_422(api):
    assert api.get(f"workflows/{uuid.uuid4()}").status_code == 404
    response = api.get("workflows/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "workflow_id"]


def test_patch_changes_only_the_keys_sent_and_keeps_the_old_version(api):
    before = api.get(f"workflows/{seed.WORKFLOW_HELLO}").json()

    response = api.patch(f"workflows/{seed.WORKFLOW_HELLO}", {"main_prompt": "Say hi\nNicely"})

    assert response.status_code == 200
    after = response.json()
    assert after["main_prompt"] == "Say hi\nNicely"
    assert after["name"] == before["name"]
    assert after["updated_at"] > before["updated_at"]
    [old] = after["old_versions"]
    assert old["main_prompt"] == before["main_prompt"]
    versions = api.get(f"workflows/{seed.WORKFLOW_HELLO}/versions").json()
    assert isinstance(versions, list)
    assert versions[0]["main_prompt"] == before["main_prompt"]


def test_patch_merges_model_metadata_and_refuses_an_unknown_model(api):
    ok = api.patch(
        f"workflows/{seed.WORKFLOW_HELLO}",
        {"model_metadata": {"main_agent_model_id": str(seed.MODEL_OPENAI_CUA)}},
    )
    unknown = api.patch(
        f"workflows/{seed.WORKFLOW_HELLO}",
        {"model_metadata": {"main_agent_model_id": str(uuid.uuid4())}},
    )

    assert ok.json()["model_metadata"]["main_agent_model_id"] == str(seed.MODEL_OPENAI_CUA)
    assert unknown.status_code == 400
    assert isinstance(unknown.json()["detail"], str)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"main_prompt": ""}, ["body", "main_prompt"]),
        ({"main_prompt": None}, ["body", "main_prompt"]),
        ({"name": "x" * 256}, ["body", "name"]),
        ({"input_schema": "{not json"}, ["body", "input_schema"]),
        ({"is_webhooks_enabled": "yes"}, ["body", "is_webhooks_enabled"]),
    ],
)
def test_patch_refuses_bad_fields_with_a_422_naming_them(api, body, loc):
    response = api.patch(f"workflows/{seed.WORKFLOW_HELLO}", body)

    assert response.status_code == 422
    assert [problem["loc"] for problem in response.json()["detail"]] == [loc]
    assert Workflow.objects.get(pk=seed.WORKFLOW_HELLO).old_versions == []


def test_patch_workflow_metadata_null_keys_remove_them(api):
    response = api.patch(
        f"workflows/{seed.WORKFLOW_REPORT}",
        {"workflow_metadata": {"has_unaddressed_error": None}},
    )

    assert "has_unaddressed_error" not in response.json()["workflow_metadata"]
    assert "last_errored_run_uuid" in response.json()["workflow_metadata"]


def test_malformed_json_is_a_422_not_a_500(api):
    response = api.patch(f"workflows/{seed.WORKFLOW_HELLO}", "{oops")

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
