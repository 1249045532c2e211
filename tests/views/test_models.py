"""The models page: staff only, htmx toggles recorded, prices, sync now; query counts pinned."""

import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from launcher.models import ModelOption, ModelOptionChange, Run, Workflow
from tests.csrf import csrf_headers
from tests.fake_cyberdesk import FakeCyberdesk

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def api():
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake


def make_option(name="Claude Sonnet", **extra) -> ModelOption:
    values = {
        "id": uuid.uuid4(),
        "name": name,
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "is_computer_use": True,
        "synced_at": timezone.now(),
    }
    values.update(extra)
    return ModelOption.objects.create(**values)


@pytest.fixture
def sonnet(db):
    return make_option()


def csrf_post(client, url, data=None, **kwargs):
    """POST with the CSRF token the page would carry (the clients enforce CSRF)."""
    client.get(reverse("model_list"))
    token = client.cookies["csrftoken"].value
    return client.post(
        url, data or {}, headers={"X-CSRFToken": token, **kwargs.pop("headers", {})}, **kwargs
    )


def test_the_page_lists_every_column_with_runs_used(staff_client, sonnet, api):
    workflow = Workflow.objects.create(id=uuid.uuid4(), name="W")
    Run.objects.create(workflow=workflow, model_option=sonnet, prompt_mode="stored")
    Run.objects.create(workflow=workflow, model_option=sonnet, prompt_mode="stored")
    make_option(
        "Old",
        is_archived_upstream=True,
        description="Retired",
        price_input_per_million=Decimal("3"),
    )
    response = staff_client.get(reverse("model_list"))
    assert response.status_code == 200
    text = response.content.decode()
    for heading in (
        "Name",
        "Provider",
        "Model",
        "Computer use",
        "Archived upstream",
        "System default",
        "Description",
        "Runs",
        "Offered to operators",
    ):
        assert f">{heading}<" in text
    assert "Retired" in text and 'value="3.0000"' in text
    rows = {option.name: option.runs_used for option in response.context["options"]}
    assert rows == {"Claude Sonnet": 2, "Old": 0}
    assert api.requests == []  # fresh catalog: no sync


def test_the_page_query_count_does_not_grow_with_models(
    staff_client, django_assert_num_queries, api
):
    for index in range(3):
        make_option(f"Model {index}")
    # session, user, freshness check, last-synced time, the annotated list
    with django_assert_num_queries(5):
        staff_client.get(reverse("model_list"))
    for index in range(3, 10):
        make_option(f"Model {index}")
    with django_assert_num_queries(5):
        staff_client.get(reverse("model_list"))


def test_an_empty_catalog_is_synced_when_the_page_opens(staff_client, api):
    api.add_model(name="Fresh model")
    response = staff_client.get(reverse("model_list"))
    assert "Fresh model" in response.content.decode()
    assert ModelOption.objects.get().enabled


def test_non_staff_get_403_on_the_page_and_every_post(
    operator_client, outsider_client, prompt_editor, sonnet
):
    for client in (operator_client, outsider_client):
        assert client.get(reverse("model_list")).status_code == 403
        token = csrf_headers(client)  # so the 403 is staff_required's, not the CSRF check's
        for url in (
            reverse("model_sync"),
            reverse("model_toggle", args=[sonnet.pk]),
            reverse("model_prices", args=[sonnet.pk]),
        ):
            assert client.post(url, {"enabled": "0"}, headers=token).status_code == 403
            both = {**HTMX, **token}
            assert client.post(url, {"enabled": "0"}, headers=both).status_code == 403
    assert ModelOption.objects.get(pk=sonnet.pk).enabled
    assert not ModelOptionChange.objects.exists()


def test_posts_need_a_csrf_token(staff_client, sonnet):
    response = staff_client.post(reverse("model_toggle", args=[sonnet.pk]), {"enabled": "0"})
    assert response.status_code == 403
    assert ModelOption.objects.get(pk=sonnet.pk).enabled


def test_the_toggle_only_accepts_post(staff_client, sonnet):
    assert staff_client.get(reverse("model_toggle", args=[sonnet.pk])).status_code == 405


def test_an_htmx_toggle_returns_the_row_and_records_who(staff_client, staff, sonnet, api):
    url = reverse("model_toggle", args=[sonnet.pk])
    response = csrf_post(staff_client, url, {"enabled": "0"}, headers=HTMX)
    assert response.status_code == 200
    text = response.content.decode()
    assert text.strip().startswith(f'<tr id="model-{sonnet.pk}">')
    assert "<html" not in text
    assert ">Enable<" in text
    assert not ModelOption.objects.get(pk=sonnet.pk).enabled
    change = ModelOptionChange.objects.get()
    assert (change.enabled, change.changed_by) == (False, staff)


def test_the_toggle_fragment_query_count_is_pinned(
    staff_client, sonnet, api, django_assert_num_queries
):
    staff_client.get(reverse("model_list"))
    token = staff_client.cookies["csrftoken"].value
    # session, user, get, lock, update, change record, savepoints (2), re-read with runs_used
    with django_assert_num_queries(9):
        staff_client.post(
            reverse("model_toggle", args=[sonnet.pk]),
            {"enabled": "0"},
            headers={**HTMX, "X-CSRFToken": token},
        )


def test_a_plain_toggle_redirects_back_to_the_page(staff_client, sonnet, api):
    response = csrf_post(staff_client, reverse("model_toggle", args=[sonnet.pk]), {"enabled": "0"})
    assert response.status_code == 302 and response["Location"] == reverse("model_list")
    response = csrf_post(staff_client, reverse("model_toggle", args=[sonnet.pk]), {"enabled": "1"})
    assert ModelOption.objects.get(pk=sonnet.pk).enabled
    assert ModelOptionChange.objects.count() == 2


def test_an_unknown_model_is_a_404(staff_client, api):
    response = csrf_post(
        staff_client, reverse("model_toggle", args=[uuid.uuid4()]), {"enabled": "0"}
    )
    assert response.status_code == 404


def test_prices_are_saved_and_bad_prices_come_back_with_errors(staff_client, sonnet, api):
    url = reverse("model_prices", args=[sonnet.pk])
    response = csrf_post(
        staff_client,
        url,
        {"price_input_per_million": "3", "price_output_per_million": "15.5"},
        headers=HTMX,
    )
    assert response.status_code == 200
    sonnet.refresh_from_db()
    assert (sonnet.price_input_per_million, sonnet.price_output_per_million) == (
        Decimal("3"),
        Decimal("15.5"),
    )
    response = csrf_post(
        staff_client, url, {"price_input_per_million": "-1", "price_output_per_million": "abc"}
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert 'value="-1"' in text and 'value="abc"' in text
    assert "greater than or equal to 0" in text and "Enter a number" in text
    sonnet.refresh_from_db()
    assert sonnet.price_input_per_million == Decimal("3")


def test_sync_now_fetches_the_catalog_and_says_so(staff_client, api):
    make_option("Already here")
    staff_client.get(reverse("model_list"))
    token = staff_client.cookies["csrftoken"].value
    api.add_model(name="Brand new")
    response = staff_client.post(reverse("model_sync"), headers={"X-CSRFToken": token}, follow=True)
    assert (
        "Models synced: 1 new, 0 updated, 1 no longer listed upstream" in response.content.decode()
    )
    api.fail_with = 503
    response = csrf_post(staff_client, reverse("model_sync"), follow=True)
    assert "Could not sync the models" in response.content.decode()
    assert ModelOption.objects.filter(name="Brand new").exists()
