"""Issue 15 items 3, 4, 6 and 11, one example each: what was a 500 is a clear answer now."""

import re
import uuid

import httpx
import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from launcher.cyberdesk import get_client
from launcher.models import RunStatus
from launcher.parsing import ParseError, id_parse, int_parse, json_parse, url_is_safe
from tests.fake_cyberdesk import serve
from tests.launch_api import NOW, make_run, make_workflow
from tests.test_webhooks import SECRET, signed_headers

pytestmark = pytest.mark.django_db
DIGITS = "1" * 5000
DEEP = "[" * 1000


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


# --- The helper itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DEEP, "nested too deeply"),
        ('{"a": ' * 65 + "1" + "}" * 65, "nested too deeply"),
        (DIGITS, "too long"),
        ("[" + DIGITS + "]", "too long"),
        ("NaN", "not a JSON number"),
        ("1e999", "too large"),
        ('"\\ud800"', "surrogate"),
        (b"\xff", "not UTF-8"),
        ("{", "Expecting"),
    ],
)
def test_json_parse_refuses_with_a_parse_error(text, message):
    with pytest.raises(ParseError) as caught:
        json_parse(text)
    assert message in caught.value.msg
    assert isinstance(caught.value, ValueError)


def test_json_parse_keeps_what_is_fine():
    assert json_parse('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert json_parse('{"a": ' * 64 + "1" + "}" * 64)  # exactly at the limit
    assert json_parse('"\\ud800"', replace_surrogates=True) == "\ufffd"
    assert json_parse('"\\ud83d\\ude00"') == "\U0001f600"  # a real pair is fine


def test_int_parse_never_raises():
    assert int_parse(DIGITS) is None
    assert int_parse("²") is None
    assert int_parse("-3") == -3  # no lower bound given
    assert int_parse("-3", min_value=-5) == -3
    assert id_parse("42") == 42
    assert id_parse(str(2**63)) is None
    assert id_parse("0") is None


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://files.cyberdesk.io/a.pdf?sig=1", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("//evil.example/x", False),
        ("http://files.cyberdesk.io/a.pdf", False),
        ("ftp://files.cyberdesk.io/a.pdf", False),
        ("https:///nohost", False),
        ("", False),
    ],
)
def test_url_is_safe(url, safe):
    assert url_is_safe(url) is safe


def test_http_only_to_the_sandbox():
    origin = "http://127.0.0.1:8000/sandbox"
    assert url_is_safe("http://127.0.0.1:8000/sandbox/files/t", http_origin=origin)
    assert not url_is_safe("http://127.0.0.2:8000/sandbox/files/t", http_origin=origin)


# --- Item 4: long integers ----------------------------------------------------------------------


def test_a_prompt_version_of_5000_digits_on_the_launch_page(catalog, operator_client, api):
    url = reverse("launch") + f"?workflow={catalog.workflow.pk}&prompt=version:{DIGITS}"
    assert operator_client.get(url).status_code == 200


def test_a_diff_version_of_5000_digits_on_the_prompts_page(catalog, operator_client, api):
    url = reverse("prompt_workflow", args=[catalog.workflow.pk]) + f"?a={DIGITS}&b={DIGITS}"
    assert operator_client.get(url).status_code == 200
    assert operator_client.get(url, headers={"HX-Request": "true"}).status_code == 200


def test_a_bulk_action_run_of_5000_digits(catalog, operator_client, api):
    page = operator_client.get(reverse("run_list"))
    response = operator_client.post(
        reverse("run_bulk_action"),
        {"action": "cancel", "run": [DIGITS], "csrfmiddlewaretoken": page.context["csrf_token"]},
    )
    assert response.status_code == 302


def test_filters_and_launch_again_of_5000_digits(catalog, operator_client, api):
    for query in (f"?batch={DIGITS}", f"?launched_by={DIGITS}", f"?prompt={DIGITS}"):
        assert operator_client.get(reverse("run_list") + query).status_code == 200
    assert operator_client.get(reverse("launch") + f"?again={DIGITS}").status_code == 200


# --- Item 3: deep JSON in the launch form and the webhook ---------------------------------------


def test_deep_json_in_an_object_input_of_the_launch_form(operator_client, api):
    workflow = make_workflow(
        input_schema={"type": "object", "properties": {"address": {"type": "object"}}},
    )
    page = operator_client.get(reverse("launch") + f"?workflow={workflow.pk}")
    token = re.search(rb'name="token" value="([^"]+)"', page.content).group(1).decode()
    response = operator_client.post(
        reverse("launch"),
        {
            "csrfmiddlewaretoken": page.context["csrf_token"],
            "workflow": str(workflow.pk),
            "model": "",
            "prompt": "stored",
            "token": token,
            "launch": "1",
            "input:address": DEEP,
        },
    )
    assert response.status_code == 200
    assert b"nested too deeply" in response.content
    assert api.creates == []


@pytest.mark.parametrize("body", [DEEP.encode(), b'{"run": {"a": ' + b"[" * 1000 + b"}}"])
def test_a_signed_webhook_body_nested_too_deeply_is_a_400(settings, body):
    settings.CYBERDESK_WEBHOOK_SECRET = SECRET
    with time_machine.travel(NOW, tick=False):
        response = Client().post(
            "/webhooks/cyberdesk/",
            body,
            content_type="application/json",
            headers=signed_headers(body),
        )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_an_api_answer_nested_too_deeply_is_an_invalid_response(settings):
    from launcher.cyberdesk import errors, use_transport

    settings.CYBERDESK_BASE_URL = "https://cyberdesk.test"
    settings.CYBERDESK_API_KEY = "sk_test"
    answer = httpx.Response(200, content=DEEP.encode())
    with (
        use_transport(httpx.MockTransport(lambda request: answer)),
        pytest.raises(errors.InvalidResponse),
    ):
        get_client().get_run(uuid.uuid4())


# --- Item 6: download URLs that are not https ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "javascript://example.com/%0aalert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "http://files.example.com/a.pdf",
        "file:///etc/passwd",
    ],
)
def test_a_download_url_that_is_not_https_is_one_clear_400(catalog, operator_client, api, url):
    run = make_run(catalog.workflow, api=api, status=RunStatus.SUCCESS)
    attachment_id = _attachment(api, run)
    api.on_request = lambda request: (
        httpx.Response(200, json={"url": url}) if "download-url" in request.url.path else None
    )
    response = operator_client.get(reverse("run_attachment_download", args=[run.pk, attachment_id]))
    assert response.status_code == 400
    assert b"not a secure (https) address" in response.content
    assert url.encode() not in response.content


def test_an_https_download_url_is_followed(catalog, operator_client, api):
    run = make_run(catalog.workflow, api=api, status=RunStatus.SUCCESS)
    attachment_id = _attachment(api, run)
    api.on_request = lambda request: (
        httpx.Response(200, json={"url": "https://files.example.com/a.pdf?sig=x"})
        if "download-url" in request.url.path
        else None
    )
    response = operator_client.get(reverse("run_attachment_download", args=[run.pk, attachment_id]))
    assert response.status_code == 302
    assert response["Location"] == "https://files.example.com/a.pdf?sig=x"


def _attachment(api, run) -> uuid.UUID:
    from tests.cyberdesk import payloads

    attachment_id = uuid.uuid4()
    api.attachments.append(payloads.attachment(id=str(attachment_id), run_id=str(run.cyberdesk_id)))
    return attachment_id


# --- Item 11: explicit includes -----------------------------------------------------------------


def test_get_workflow_asks_for_tags_and_post_run_checks(api):
    workflow = api.add_workflow()
    get_client().get_workflow(workflow["id"])
    request = api.calls("GET", f"/v1/workflows/{workflow['id']}")[0]
    assert request.url.params["include"] == "tags,post_run_checks"
