"""The Models page as staff read it (issue 14): one state per model, where prices come from,
"unknown" when no price is set, and Enable / Disable early in the row (phones)."""

import pytest
from django.urls import reverse

from tests.views.test_models import api, make_option  # noqa: F401  (api: a fixture)

pytestmark = pytest.mark.django_db


def _row(html: str, option) -> str:
    return html.split(f'<tr id="model-{option.pk}">')[1].split("</tr>")[0]


def test_an_archived_model_says_one_state_not_enabled_and_not_offered(staff_client, api):  # noqa: F811
    archived = make_option("Old Opus", is_archived_upstream=True, enabled=True)

    row = _row(staff_client.get(reverse("model_list")).content.decode(), archived)

    assert "Not offered (archived upstream)" in row
    assert "Enabled" not in row
    assert "Disable" in row  # staff can still take it off the list for good


def test_the_page_says_where_prices_come_from_and_unset_ones_are_unknown(staff_client, api):  # noqa: F811
    option = make_option()

    html = staff_client.get(reverse("model_list")).content.decode()
    text = " ".join(html.split())

    assert "A run's cost comes from Cyberdesk" in text
    assert "it changes no run's reported cost" in text
    assert _row(html, option).count('placeholder="unknown"') == 2


def test_enable_and_disable_come_right_after_the_name(staff_client, api):  # noqa: F811
    option = make_option()

    row = _row(staff_client.get(reverse("model_list")).content.decode(), option)

    assert row.index("Disable") < row.index("anthropic")  # before the provider column
