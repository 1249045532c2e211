"""The launch page: who may use it, what it shows, the htmx swaps, and launching."""

import re
import uuid

import httpx
import pytest
from django.test import Client
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from launcher.cyberdesk import use_transport
from launcher.models import Run, RunStatus, Submission
from tests.csrf import csrf_headers
from tests.fake_cyberdesk import serve
from tests.launch_api import VALID_POST, make_run

pytestmark = pytest.mark.django_db
URL = reverse("launch")
HTMX = {"HX-Request": "true"}
POLL_TRIGGER = 'hx-trigger="every 2s"'


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def _token(response) -> str:
    return re.search(rb'name="token" value="([^"]+)"', response.content).group(1).decode()


def _post(client, data, **kwargs):
    """POST like a browser: with the CSRF cookie of a page load and its form token."""
    if "csrftoken" not in client.cookies:
        client.get(URL)
    data = {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    return client.post(URL, data, **kwargs)


def _launch_data(catalog, page, **overrides):
    data = {
        "workflow": str(catalog.workflow.pk),
        "model": "",
        "prompt": "stored",
        "token": _token(page),
        "launch": "1",
        **VALID_POST,
    }
    data.update(overrides)
    return data


# --- Access ---------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert client.post(URL, {"refresh": "1"}).status_code == 302


def test_users_without_the_launch_permission_get_403(outsider_client, catalog, api):
    assert outsider_client.get(URL).status_code == 403
    assert outsider_client.get(URL, headers=HTMX).status_code == 403
    response = outsider_client.post(
        URL, {"workflow": str(catalog.workflow.pk)}, headers=csrf_headers(outsider_client)
    )
    assert response.status_code == 403
    assert api.creates == []


def test_a_post_without_csrf_token_is_refused(operator_client, catalog, api):
    page = operator_client.get(URL)
    response = operator_client.post(URL, _launch_data(catalog, page))
    assert response.status_code == 403
    assert not Run.objects.exists()


# --- The page ---------------------------------------------------------------------------------


def test_the_page_has_the_labelled_controls(operator_client, catalog, api):
    response = operator_client.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    for label, target in [
        ("Workflow", "id_workflow"),
        ("Model", "id_model"),
        ("Prompt", "id_prompt"),
    ]:
        assert f'<label for="{target}">{label}</label>' in html
    assert ">Launch run</button>" in html
    for key in ["customer_id", "age", "notify", "region", "tags", "$api_key"]:
        assert f'<label for="id_input:{key}">{key}</label>' in html
    assert 'type="password" name="input:$api_key"' in html
    assert api.requests == []  # the mirror and the catalog are fresh: no API call


def test_the_model_and_prompt_choices_and_their_defaults(operator_client, catalog, api):
    html = operator_client.get(URL).content.decode()
    assert '<option value="" selected>Workflow default (Cyberdesk default)</option>' in html
    assert f'<option value="{catalog.model.pk}">Claude Sonnet</option>' in html
    assert "Old Model" not in html
    assert '<option value="label:production" selected>production (v1)</option>' in html
    assert "Latest (v2)" in html
    assert "Workflow&#x27;s stored prompt" in html


def test_the_workflow_list_shows_names_tags_and_a_warning(operator_client, catalog, api):
    catalog.workflow.last_run_errored = True
    catalog.workflow.save()
    html = operator_client.get(URL).content.decode()
    assert f'<option value="{catalog.workflow.pk}" selected>Invoice intake</option>' in html
    assert '<span class="tag">finance</span>' in html
    assert "Unaddressed error" in html and "Last run errored" not in html


def test_the_preview_shows_the_resolved_prompt_with_variables_marked(operator_client, catalog, api):
    html = operator_client.get(URL).content.decode()
    assert "production (v1)" in html
    assert '<mark class="var">{customer_id}</mark>' in html


def test_choosing_another_prompt_swaps_in_its_inputs_and_keeps_typed_values(
    operator_client, catalog, api
):
    response = _post(
        operator_client,
        {
            "refresh": "1",
            "workflow": str(catalog.workflow.pk),
            "prompt": f"version:{catalog.v2.pk}",
            "input:customer_id": "typed-id",
            "input:$api_key": "typed-secret",
        },
        headers=HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="launch-details">')
    assert 'value="typed-id"' in html
    assert "typed-secret" not in html
    assert '<label for="id_input:ticket">ticket</label>' in html
    assert '<mark class="var var-secret">{$api_key}</mark>' in html
    assert not Run.objects.exists()


def test_without_javascript_the_choose_button_reloads_the_whole_page(operator_client, catalog, api):
    response = _post(
        operator_client, {"refresh": "1", "workflow": str(catalog.workflow.pk), "prompt": "latest"}
    )
    assert response.status_code == 200
    assert b"<h1>Launch a run</h1>" in response.content
    assert b'<option value="latest" selected>' in response.content


def test_an_api_that_cannot_be_reached_gives_a_message_not_a_500(operator_client, settings):
    """Connection refused on every request, at the transport; the client's back-offs go to a
    recorded sleep instead of the wall clock."""
    settings.CYBERDESK_BASE_URL = "https://cyberdesk.test"
    settings.CYBERDESK_API_KEY = "sk_test"
    tried, slept = [], []

    def refuse(request):
        tried.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    with use_transport(httpx.MockTransport(refuse), sleep=slept.append):
        response = operator_client.get(URL)

    assert response.status_code == 200
    assert b"Cyberdesk is unreachable" in response.content
    assert tried and set(tried) <= {"/v1/workflows", "/v1/model-configurations"}
    assert len(slept) == len(tried) - len(set(tried))  # a back-off before each retry, not slept


# --- Launching ----------------------------------------------------------------------------------


def test_a_launch_goes_to_the_runs_page_and_sends_the_overrides(operator_client, catalog, api):
    page = operator_client.get(URL)
    data = _launch_data(
        catalog, page, model=str(catalog.model.pk), prompt=f"version:{catalog.v1.pk}"
    )
    response = _post(operator_client, data)
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    body = api.create_body()
    assert body["main_agent_model_id"] == str(catalog.model.pk)
    assert body["main_prompt"] == catalog.v1.text
    assert body["input_values"] == {
        "customer_id": "c-100",
        "age": 42,
        "notify": True,
        "region": "us",
        "tags": ["vip", "new"],
    }
    assert body["sensitive_input_values"] == {"api_key": "s3cret-key"}
    assert str(run.idempotency_key) == data["token"]
    assert run.launched_by.username == "olivia-operator"


def test_an_htmx_launch_answers_with_a_client_redirect(operator_client, catalog, api):
    page = operator_client.get(URL)
    response = _post(operator_client, _launch_data(catalog, page), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("run_detail", args=[Run.objects.get().pk])


def test_a_double_submit_gives_one_run_and_one_api_call(operator_client, catalog, api):
    data = _launch_data(catalog, operator_client.get(URL))
    first = _post(operator_client, data)
    second = _post(operator_client, data)
    assert first["Location"] == second["Location"]
    assert Run.objects.count() == 1
    assert len(api.creates) == 1


def test_invalid_inputs_come_back_with_every_error_and_the_typed_values(
    operator_client, catalog, api
):
    page = operator_client.get(URL)
    data = _launch_data(
        catalog, page, **{"input:customer_id": "ab", "input:age": "7", "input:tags": "x\ny"}
    )
    response = _post(operator_client, data, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<form id="launch-form"')
    assert "Must be at least 3 characters long." in html
    assert "Must be at least 18." in html
    assert 'value="ab"' in html and 'value="7"' in html and ">\nx\ny</textarea>" in html
    assert "s3cret-key" not in html
    assert 'aria-invalid="true"' in html
    assert not Run.objects.exists()
    assert api.creates == []


def test_api_down_keeps_the_values_and_says_it_is_safe_to_try_again(operator_client, catalog, api):
    api.create_failure = httpx.ConnectError("connection refused")
    page = operator_client.get(URL)
    data = _launch_data(catalog, page)
    response = _post(operator_client, data)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was sent; it is safe to try again." in html
    assert 'value="c-100"' in html and 'value="42"' in html
    assert "s3cret-key" not in html
    # The run is kept as rejected (nothing runs), and the corrected form is a new launch.
    assert Run.objects.get().status == RunStatus.REJECTED
    assert _token(response) != data["token"]

    api.create_failure = None
    again = _post(operator_client, {**data, "token": _token(response)})
    assert again.status_code == 302
    assert Run.objects.filter(submission=Submission.ACCEPTED).count() == 1


def test_the_apis_validation_errors_land_next_to_the_fields(operator_client, catalog, api):
    api.create_failure = httpx.Response(
        422,
        json={
            "detail": [
                {
                    "loc": ["body", "input_values", "customer_id"],
                    "msg": "unknown customer",
                    "type": "value_error",
                }
            ]
        },
    )
    response = _post(operator_client, _launch_data(catalog, operator_client.get(URL)))
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'id="id_input:customer_id_error"><li>unknown customer</li>', html)
    assert "correct the values and launch again" in html


def test_a_lost_answer_goes_to_the_run_page_which_says_not_to_launch_again(
    operator_client, catalog, api
):
    api.create_failure = httpx.ReadTimeout("no answer")
    response = _post(operator_client, _launch_data(catalog, operator_client.get(URL)))
    run = Run.objects.get()
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.submission == Submission.UNKNOWN
    page = operator_client.get(response["Location"])
    assert b"do not launch it again" in page.content


def test_a_model_disabled_meanwhile_is_refused_on_the_form(operator_client, catalog, api):
    page = operator_client.get(URL)
    catalog.model.enabled = False
    catalog.model.save()
    response = _post(operator_client, _launch_data(catalog, page, model=str(catalog.model.pk)))
    assert response.status_code == 200
    assert b"That model is no longer offered; choose another." in response.content
    assert api.creates == []


# --- Launch again -------------------------------------------------------------------------------


def test_launch_again_prefills_the_form_and_shows_the_prompt_choice(operator_client, catalog, api):
    run = make_run(
        catalog.workflow,
        status=RunStatus.SUCCESS,
        model_option=catalog.model,
        prompt_mode="pinned",
        prompt_version=catalog.v2,
        input_values={"customer_id": "c-7", "age": 33, "tags": ["a", "b"], "notify": False},
        sensitive_input_keys=["api_key"],
    )
    html = operator_client.get(URL, {"again": run.pk}).content.decode()
    assert f'<option value="{catalog.model.pk}" selected>Claude Sonnet</option>' in html
    assert f'<option value="version:{catalog.v2.pk}" selected>' in html
    assert 'value="c-7"' in html and 'value="33"' in html and ">\na\nb</textarea>" in html
    assert "Same version v2" in html and "Current production (v1)" in html
    assert "type $api_key again" in html

    production = operator_client.get(URL, {"again": run.pk, "prompt_from": "production"})
    assert b'<option value="label:production" selected>' in production.content


def test_launch_again_of_an_unknown_run_is_404(operator_client, catalog, api):
    assert operator_client.get(URL, {"again": 999999}).status_code == 404


@pytest.mark.parametrize("again", ["²", "99999999999999999999999", "x"])
def test_launch_again_with_a_malformed_run_id_shows_the_plain_form(
    operator_client, catalog, api, again
):
    response = operator_client.get(URL, {"again": again})
    assert response.status_code == 200
    assert response.context["again"] is None


def test_a_refresh_with_a_malformed_prompt_choice_shows_its_error(operator_client, catalog, api):
    response = _post(
        operator_client,
        {"workflow": str(catalog.workflow.pk), "prompt": "version:²", "refresh": "1"},
    )
    assert response.status_code == 200
    assert "Unknown prompt choice" in response.content.decode()


def test_a_fresh_token_is_issued_for_every_form(operator_client, catalog, api):
    assert _token(operator_client.get(URL)) != _token(operator_client.get(URL))
    uuid.UUID(_token(operator_client.get(URL)))


# --- End to end, against the real sandbox over HTTP --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_pinned_version_and_a_chosen_model_reach_the_sandbox(live_server, settings):
    """The real client against the real sandbox: the page syncs workflows and models from it,
    the launch sends a pinned version and a model, and the run's output (computed by the
    sandbox from what it received) names that version's hash and that model."""
    from datetime import timedelta

    import time_machine
    from django.contrib.auth.models import Permission
    from django.contrib.auth.models import User as UserModel
    from django.test import Client
    from django.utils import timezone

    from launcher.models import ModelOption, PromptVersion, Workflow
    from launcher.sandbox.seed import MODEL_OPUS, WORKFLOW_HELLO, seed_demo_data
    from launcher.sandbox.tasks import sandbox_tick

    settings.CYBERDESK_BASE_URL = live_server.url + "/sandbox"
    settings.CYBERDESK_API_KEY = settings.SANDBOX_API_KEY
    settings.SANDBOX_WEBHOOK_URL = live_server.url + "/webhooks/cyberdesk/"
    seed_demo_data()
    user = UserModel.objects.create_user("erin-e2e", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="launch_run"))
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    page = browser.get(URL, {"workflow": str(WORKFLOW_HELLO)})
    assert page.status_code == 200
    workflow = Workflow.objects.get(pk=WORKFLOW_HELLO)  # mirrored from the sandbox
    assert ModelOption.objects.get(pk=MODEL_OPUS).is_offered
    v1 = PromptVersion.objects.create(workflow=workflow, number=1, text="Open Notepad. (v1)")
    PromptVersion.objects.create(workflow=workflow, number=2, text="Open Paint. (v2)")

    page = browser.get(URL, {"workflow": str(WORKFLOW_HELLO)})
    response = browser.post(
        URL,
        {
            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
            "workflow": str(WORKFLOW_HELLO),
            "model": str(MODEL_OPUS),
            "prompt": f"version:{v1.pk}",
            "token": _token(page),
            "launch": "1",
        },
    )
    run = Run.objects.get()
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.submission == Submission.ACCEPTED

    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=False):
        for _ in range(5):
            sandbox_tick()
        status = browser.get(reverse("run_status", args=[run.pk]), headers=HTMX)
    run.refresh_from_db()
    assert run.is_finished, run.status
    assert run.output_data["prompt_sha256"] == v1.sha256 == run.prompt_sha256
    assert run.output_data["effective_model_id"] == str(MODEL_OPUS)
    assert v1.sha256 in status.content.decode()
    assert POLL_TRIGGER not in status.content.decode()


def test_the_launch_form_keeps_its_fields_out_of_error_reports(operator, catalog, api):
    client = Client()
    client.force_login(operator)
    response = client.post(URL, {"workflow": str(catalog.workflow.pk), "input:$api_key": "s3cret"})

    request = response.wsgi_request
    assert request.sensitive_post_parameters == "__ALL__"
    cleaned = SafeExceptionReporterFilter().get_post_parameters(request)
    assert "s3cret" not in str(dict(cleaned))
