"""The new batch form, as a newcomer uses it (issue 14): one click launches a previewed upload,
a workflow change re-renders the form for that workflow, the expected columns and templates,
bad rows with their content, the delimiter detected, and the table of runs it will create."""

import csv
import io
import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from launcher.models import Batch, Run
from tests.fake_cyberdesk import serve
from tests.launch_api import make_workflow

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
GOOD = ['{"customer_id": "c-100", "age": 42}', '{"customer_id": "c-101", "age": 43}']
BAD = [f'{{"customer_id": "c-2{n:02}", "age": "old"}}' for n in range(7)]


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def _values(client, catalog, **data):
    client.get(reverse("batch_list"))
    values = {
        "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        "token": str(uuid.uuid4()),
        "workflow": str(catalog.workflow.pk),
        "models": ["default"],
        "prompts": ["stored"],
        "source": "rows",
        "rows_text": "",
        "preview": "1",
    }
    values.update(data)
    return values


def test_an_uploaded_file_with_bad_rows_launches_with_one_click_after_its_preview(
    catalog, operator_client, api
):
    upload = SimpleUploadedFile("rows.jsonl", ("\n".join(GOOD + BAD) + "\n").encode())
    preview = operator_client.post(
        reverse("batch_new"), _values(operator_client, catalog, rows_file=upload)
    )
    form = preview.context["form"]
    assert "Launch 2 runs" in preview.content.decode()

    # The browser sends the textarea back with CRLF line endings (HTML form encoding).
    shown = form.data["rows_text"]
    response = operator_client.post(
        reverse("batch_new"),
        _values(
            operator_client,
            catalog,
            token=form.data["token"],
            previewed=form.data["previewed"],
            rows_text=shown.replace("\n", "\r\n"),
            preview="",
            launch="1",
        ),
    )

    assert response.status_code == 302, response.content.decode()[-3000:]
    assert Batch.objects.get().runs.count() == 2


def test_choosing_another_workflow_re_renders_the_form_for_it_keeping_the_rows(
    catalog, operator_client, api
):
    other = make_workflow(
        name="Timesheet",
        main_prompt="Week {week}.",
        input_schema={"type": "object", "properties": {"week": {"type": "string"}}},
    )
    values = _values(
        operator_client,
        catalog,
        workflow=str(other.pk),
        choose="1",
        rows_text="week\r\n2025-W10\r\n",
        name="March",
    )
    del values["preview"]

    response = operator_client.post(reverse("batch_new"), values, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="batch-details"')  # the fragment only
    assert "<code>week</code>" in html and "<code>customer_id</code>" not in html
    assert "week\n2025-W10" in html and 'value="March"' in html
    assert Run.objects.count() == 0


def test_preview_checks_the_rows_against_the_workflow_in_the_picker(catalog, operator_client, api):
    other = make_workflow(
        name="Timesheet",
        main_prompt="Week {week}.",
        input_schema={"type": "object", "properties": {"week": {"type": "string"}}},
    )

    response = operator_client.post(
        reverse("batch_new"),
        _values(operator_client, catalog, workflow=str(other.pk), rows_text="week\n2025-W10\n"),
    )

    html = response.content.decode()
    assert "Preview: 1 run" in html, response.context["form"].errors
    assert f'<option value="{other.pk}" selected>' in html  # the picker keeps the choice


def test_the_form_lists_the_expected_columns_and_offers_templates(catalog, operator_client, api):
    html = operator_client.get(reverse("batch_new")).content.decode()

    assert "Expected columns" in html
    assert "<code>customer_id</code>" in html and "<code>age</code>" in html
    assert "$api_key" not in html.split("Expected columns")[1].split("</ul>")[0]  # no secrets
    assert reverse("batch_template", args=["csv"]) in html
    assert reverse("batch_template", args=["jsonl"]) in html


def test_the_templates_have_every_column_a_row_may_fill(catalog, operator_client, api):
    query = {"workflow": str(catalog.workflow.pk)}
    csv_file = operator_client.get(reverse("batch_template", args=["csv"]), query)
    jsonl = operator_client.get(reverse("batch_template", args=["jsonl"]), query)

    assert csv_file["Content-Disposition"] == 'attachment; filename="invoice-intake-rows.csv"'
    header = next(csv.reader(io.StringIO(csv_file.content.decode())))
    # (In schema order on SQLite; PostgreSQL jsonb keeps no key order.)
    assert sorted(header) == ["age", "customer_id", "notify", "region", "tags"]
    assert json.loads(jsonl.content.decode()) == {
        "customer_id": None,
        "age": None,
        "notify": True,
        "region": "eu",
        "tags": None,
    }
    assert operator_client.get(reverse("batch_template", args=["xml"]), query).status_code == 404


def test_bad_rows_are_shown_with_their_content(catalog, operator_client, api):
    response = operator_client.post(
        reverse("batch_new"),
        _values(operator_client, catalog, rows_text="customer_id,age\nc-100,42\nc-101,old\n"),
    )

    html = response.content.decode()
    assert '<code class="row-content">c-101,old</code>' in html
    assert "age: Enter a whole number." in html


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_the_csv_delimiter_is_detected(catalog, operator_client, api, delimiter):
    rows = f"customer_id{delimiter}age\nc-100{delimiter}42\nc-101{delimiter}43\n"

    response = operator_client.post(
        reverse("batch_new"), _values(operator_client, catalog, rows_text=rows)
    )

    html = response.content.decode()
    assert "Preview: 2 runs" in html and "bad row" not in html


def test_the_preview_lists_the_first_20_runs_then_how_many_more(catalog, operator_client, api):
    rows = "customer_id,age\n" + "".join(f"c-{n:03},{20 + n}\n" for n in range(25))

    response = operator_client.post(
        reverse("batch_new"),
        _values(
            operator_client, catalog, rows_text=rows, models=["default", str(catalog.model.pk)]
        ),
    )

    html = response.content.decode()
    assert "Runs it will create" in html
    table = html.split("Runs it will create")[1].split("</table>")[0]
    assert table.count("<tr>") == 21  # the header and 20 runs
    assert "and 30 more." in html  # 25 rows × 2 models = 50
