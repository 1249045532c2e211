"""Bad input is answered, never a 500."""

import base64
import json

import pytest

from launcher.sandbox import seed
from launcher.sandbox.models import Workflow

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "body",
    [
        "",
        "[1, 2]",
        "null",
        "{" * 5000 + "}" * 5000,
        b"\xff\xfe not utf-8",
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_422(api, body):
    response = api.post("runs", body)

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


@pytest.mark.parametrize(
    "path, method, body",
    [
        ("runs", "post", {"workflow_id": str(seed.WORKFLOW_HELLO), "input_values": {"a": "x\x00"}}),
        (f"workflows/{seed.WORKFLOW_HELLO}", "patch", {"main_prompt": "Say hi\x00"}),
        (f"workflows/{seed.WORKFLOW_HELLO}", "patch", {"name": {"\x00": 1}}),
    ],
)
def test_a_nul_character_in_a_body_is_a_422_not_a_database_error(api, path, method, body):
    """PostgreSQL stores U+0000 in neither text nor jsonb."""
    response = getattr(api, method)(path, body)

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body"]
    assert "\\u0000" not in response.content.decode()


def test_a_nul_character_in_a_search_is_a_422_not_a_database_error(api):
    response = api.get("runs", {"search": "a\x00"})

    assert response.status_code == 422
    assert [problem["loc"] for problem in response.json()["detail"]] == [["query", "search"]]


def test_an_absurd_skip_is_a_422_not_a_database_error(api):
    assert api.get("runs", {"skip": str(10**30)}).status_code == 422
    assert api.get("workflows", {"skip": str(2**40)}).status_code == 422


def test_patching_check_snapshots_needs_a_valid_status(api):
    run = api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)}).json()

    response = api.patch(f"runs/{run['id']}", {"post_run_checks": [{"name": "x"}, 3]})

    assert response.status_code == 422
    assert [p["loc"] for p in response.json()["detail"]] == [
        ["body", "post_run_checks", 0, "status"],
        ["body", "post_run_checks", 1],
    ]


def test_moving_a_run_backwards_by_patch_is_refused(api, clock):
    run = api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO)}).json()
    clock.shift(120)

    response = api.patch(f"runs/{run['id']}", {"status": "running"})

    assert response.status_code == 409


def test_a_stored_schema_with_an_unresolvable_ref_does_not_break_run_creation(api):
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}
    Workflow.objects.filter(pk=seed.WORKFLOW_HELLO).update(input_schema=json.dumps(schema))

    response = api.post("runs", {"workflow_id": str(seed.WORKFLOW_HELLO), "input_values": {"a": 1}})

    assert response.status_code == 201


def test_a_file_name_with_quotes_and_newlines_downloads_safely(api):
    run = api.post(
        "runs",
        {
            "workflow_id": str(seed.WORKFLOW_HELLO),
            "file_inputs": [
                {
                    "filename": 'evil"\r\nX-Injected: 1.txt',
                    "content": base64.b64encode(b"hi").decode(),
                }
            ],
        },
    ).json()
    [attachment_id] = run["input_attachment_ids"]

    response = api.get(f"run-attachments/{attachment_id}/download")

    assert response.status_code == 200
    assert response.content == b"hi"
    assert "X-Injected" not in response.headers
