"""Issue 15 item 1: the batch form never shows a pasted secret back — in the five cases that
did, and in the others around them."""

import uuid

import pytest
from django.urls import reverse

from launcher.models import Run
from tests.fake_cyberdesk import serve
from tests.launch_api import make_workflow

pytestmark = pytest.mark.django_db
CANARY = "CANARY-s3cret-7f3a"


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def _post(client, workflow, **data):
    client.get(reverse("batch_list"))
    values = {
        "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        "token": str(uuid.uuid4()),
        "workflow": str(workflow.pk),
        "models": ["default"],
        "prompts": ["stored"],
        "source": "rows",
        "preview": "1",
    }
    values.update(data)
    response = client.post(reverse("batch_new"), values)
    assert response.status_code == 200
    return response.content.decode()


def _assert_not_echoed(page: str) -> None:
    assert CANARY not in page
    assert "Sensitive inputs cannot come from a batch" in page
    assert Run.objects.count() == 0


def test_a_workflow_needing_secrets_refuses_without_echoing_the_inputs(operator_client, api):
    """Case 1: the refusal came before the inputs were cleaned."""
    workflow = make_workflow(
        name="Bank login",
        input_schema={
            "type": "object",
            "required": ["$password"],
            "properties": {"$password": {"type": "string"}, "user": {"type": "string"}},
        },
    )
    page = _post(
        operator_client,
        workflow,
        source="count",
        count="2",
        inputs_json=f'{{"user": "ada", "$password": "{CANARY}"}}',
        rows_text=f"user,$password\nada,{CANARY}\n",
    )
    _assert_not_echoed(page)
    assert "This workflow needs secrets" in page
    assert "ada" in page  # the rest is kept


@pytest.mark.parametrize(
    "inputs_json",
    [
        f'{{"customer_id": "c-100", "$api_key": "{CANARY}",',  # cut short
        f'{{"customer_id": "c-100" "$api_key": "{CANARY}"}}',  # a comma missing
        f"{{$api_key: {CANARY}}}",  # not JSON at all
        f'[{{"$api_key": "{CANARY}"}}]',  # JSON, but not an object
    ],
)
def test_invalid_inputs_json_holding_a_secret_is_not_shown_again(
    catalog, operator_client, api, inputs_json
):
    """Case 2."""
    page = _post(
        operator_client, catalog.workflow, source="count", count="2", inputs_json=inputs_json
    )
    _assert_not_echoed(page)


def test_an_invalid_json_lines_row_holding_a_secret_is_not_shown_again(
    catalog, operator_client, api
):
    """Case 3: the other rows and the line numbers stay."""
    rows = (
        '{"customer_id": "c-100", "age": 42}\n'
        f'{{"customer_id": "c-101", "age": 43, "$api_key": "{CANARY}"\n'
        '{"customer_id": "c-102", "age": 44}\n'
    )
    page = _post(operator_client, catalog.workflow, rows_text=rows)
    _assert_not_echoed(page)
    assert "c-100" in page and "c-102" in page
    assert "line removed" in page


def test_a_csv_field_over_the_parsers_limit_does_not_echo_a_secret(catalog, operator_client, api):
    """Case 4: csv.Error (field larger than field limit) left the text as it was."""
    rows = f'customer_id,age,$api_key\nc-100,42,{CANARY}\nc-101,43,"{"x" * 140_000}"\n'
    page = _post(operator_client, catalog.workflow, rows_text=rows)
    _assert_not_echoed(page)


@pytest.mark.parametrize(
    ("input_format", "rows"),
    [
        ("jsonl", f"customer_id,age,$api_key\nc-100,42,{CANARY}\n"),
        ("csv", f'{{"customer_id": "c-100", "age": 42, "$api_key": "{CANARY}"}}\n'),
    ],
)
def test_a_format_that_does_not_match_the_text_does_not_echo_a_secret(
    catalog, operator_client, api, input_format, rows
):
    """Case 5: CSV text with JSON Lines chosen (and the other way round)."""
    page = _post(operator_client, catalog.workflow, rows_text=rows, input_format=input_format)
    _assert_not_echoed(page)
    assert "c-100" in page


def test_a_json_lines_row_with_a_huge_number_is_a_row_error_not_a_500(
    catalog, operator_client, api
):
    """Item 5: json.loads raises a plain ValueError (no .msg) past 4,300 digits."""
    rows = (
        '{"customer_id": "c-100", "age": 42}\n{"customer_id": "c-101", "age": ' + "1" * 5000 + "}\n"
    )
    page = _post(operator_client, catalog.workflow, rows_text=rows)
    assert "not valid JSON (A number is too long" in page


@pytest.mark.parametrize(
    "field",
    ["rows_jsonl", "inputs_json", "csv_cell"],
)
def test_deeply_nested_json_in_a_batch_is_an_error_not_a_500(operator_client, api, field):
    """Item 3: 1,000 × "[" in batch rows, in the inputs, in a CSV cell of an object input."""
    workflow = make_workflow(
        input_schema={"type": "object", "properties": {"address": {"type": "object"}}},
    )
    deep = "[" * 1000
    data = {
        "rows_jsonl": {"rows_text": '{"address": ' + deep + "}\n"},
        "inputs_json": {
            "source": "count",
            "count": "1",
            "inputs_json": '{"address": ' + deep + "}",
        },
        "csv_cell": {"rows_text": 'address\n"' + deep + '"\n'},
    }[field]
    page = _post(operator_client, workflow, **data)
    assert "nested too deeply" in page or "not valid JSON" in page
