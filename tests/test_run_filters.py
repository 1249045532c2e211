"""The runs page's filter form: whatever a URL says, the list answers (an invalid filter is
ignored and explained), never a 500 — on SQLite too, whose integers stop at 2**63 - 1."""

import pytest
from django.urls import reverse

from launcher.models import RunStatus
from launcher.run_filters import RunFilterForm
from tests.launch_api import make_run

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": "²"},
        {"prompt": HUGE},
        {"launched_by": HUGE},
        {"batch": HUGE},
        {"created_to": "9999-12-31"},
    ],
)
def test_an_odd_filter_value_is_refused_with_its_error_never_a_500(
    catalog, operator_client, params
):
    run = make_run(catalog.workflow, status=RunStatus.SUCCESS)

    response = operator_client.get(reverse("run_list"), params)

    assert response.status_code == 200
    assert [row.pk for row in response.context["runs"]] == [run.pk]
    (name,) = params
    assert response.context["form"].errors[name]


def test_the_last_representable_day_and_a_plain_version_still_filter():
    form = RunFilterForm({"created_from": "2025-03-01", "created_to": "2025-03-02", "prompt": "7"})
    filters = form.filters()
    assert form.errors == {}
    assert str(filters.created_to) == "2025-03-02"
    assert filters.prompt_version == "7"
