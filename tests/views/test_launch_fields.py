"""The launch form's fields as a newcomer reads them (issue 14): the schema's title as the
label with the key beside it in monospace, the description under the field."""

import pytest
from django.urls import reverse

from tests.fake_cyberdesk import serve
from tests.launch_api import make_workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def test_a_title_is_the_label_and_the_key_sits_beside_it(operator_client, api):
    workflow = make_workflow(
        main_prompt="Check {patient_name}.",
        input_schema={
            "type": "object",
            "properties": {
                "patient_name": {
                    "type": "string",
                    "title": "Patient name",
                    "description": "As on the insurance card",
                },
                "visit": {"type": "string", "format": "date"},
            },
        },
    )

    html = operator_client.get(reverse("launch"), {"workflow": workflow.pk}).content.decode()

    assert (
        '<label for="id_input:patient_name">Patient name '
        '<code class="input-key">patient_name</code></label>'
    ) in html
    help_at = html.index('id="id_input:patient_name_helptext">As on the insurance card</p>')
    assert html.index('name="input:patient_name"') < help_at  # the help is under the field
    assert '<label for="id_input:visit">visit</label>' in html  # no title: the key
    assert 'type="date" name="input:visit"' in html
