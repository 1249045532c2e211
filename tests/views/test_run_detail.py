"""The run page, its polled status fragment, and its actions."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from launcher.models import Run, RunStatus
from tests.fake_cyberdesk import serve
from tests.launch_api import NOW, make_run

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}
POLL = 'hx-trigger="every 2s"'


@pytest.fixture
def api(settings):
    settings.RUN_REFRESH_INTERVAL_SECONDS = 2.0
    with serve(settings) as fake:
        yield fake


def _urls(run, attachment_id=None):
    return {
        "page": reverse("run_detail", args=[run.pk]),
        "status": reverse("run_status", args=[run.pk]),
        "cancel": reverse("run_cancel", args=[run.pk]),
        "retry": reverse("run_retry", args=[run.pk]),
        "download": reverse(
            "run_attachment_download", args=[run.pk, attachment_id or uuid.uuid4()]
        ),
    }


def _post(client, url, **kwargs):
    client.get(reverse("run_list"))  # any page: sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    return client.post(url, {"csrfmiddlewaretoken": token}, **kwargs)


def finished_run(catalog, api=None, **fields):
    values = {
        "status": RunStatus.SUCCESS,
        "model_option": catalog.model,
        "prompt_mode": "label",
        "prompt_label": "production",
        "prompt_version": catalog.v1,
        "prompt_sha256": catalog.v1.sha256,
        "input_values": {"customer_id": "c-1", "note": "<script>alert(1)</script>"},
        "sensitive_input_keys": ["api_key"],
        "file_input_names": ["scan.pdf"],
        "started_at": NOW - timedelta(minutes=3),
        "ended_at": NOW - timedelta(minutes=1),
        "output_data": {"invoice": "<b>INV-1</b>", "total": 12.5},
        "errors": ["Step 3 took long"],
        "post_run_checks": [{"name": "Has invoice", "status": "success", "type": "x"}],
        "cost_usd": Decimal("0.012345"),
        "message_history": [{"role": "assistant", "content": "done"}],
        "synced_at": NOW,
    }
    values.update(fields)
    return make_run(catalog.workflow, api=api, **values)


# --- Access -----------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in_everywhere(client, catalog):
    run = finished_run(catalog)
    for name, url in _urls(run).items():
        method = client.post if name in ("cancel", "retry") else client.get
        response = method(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("login")), name


def test_users_without_the_launch_permission_see_nothing(outsider_client, catalog, api):
    run = finished_run(catalog)
    urls = _urls(run)
    assert outsider_client.get(urls["page"]).status_code == 403
    assert outsider_client.get(urls["status"], headers=HTMX).status_code == 403
    assert outsider_client.get(urls["download"]).status_code == 403
    assert _post(outsider_client, urls["cancel"]).status_code == 403
    assert _post(outsider_client, urls["retry"]).status_code == 403
    assert api.requests == []


def test_actions_need_post_and_a_csrf_token(operator_client, catalog, api):
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    urls = _urls(run)
    assert operator_client.get(urls["cancel"]).status_code == 405
    assert operator_client.post(urls["cancel"]).status_code == 403  # no CSRF token
    assert api.requests == []


def test_an_unknown_run_is_404(operator_client):
    assert operator_client.get(reverse("run_detail", args=[999999])).status_code == 404


# --- The page ---------------------------------------------------------------------------------


def test_the_page_shows_everything_about_a_finished_run(operator_client, operator, catalog, clock):
    run = finished_run(catalog, launched_by=operator)
    html = operator_client.get(_urls(run)["page"]).content.decode()
    assert "Success" in html
    assert "2m 00s" in html  # duration
    assert "olivia-operator" in html
    assert "Invoice intake" in html
    assert "Claude Sonnet" in html
    prompt_link = reverse("prompt_workflow", args=[catalog.workflow.pk]) + "#v1"
    assert f'<a href="{prompt_link}">v1</a>' in html
    assert "(via production)" in html
    assert "Diff to the current latest (v2)" in html
    # A secret by its key and whether it was given, never a value.
    assert '<span class="mono">$api_key</span>' in html and ">set</span>" in html
    assert "scan.pdf" in html
    assert "&lt;b&gt;INV-1&lt;/b&gt;" in html and "<b>INV-1</b>" not in html
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    assert "Step 3 took long" in html
    assert "Has invoice" in html
    assert "$0.0123" in html
    assert '<h2 id="timeline-heading">Timeline</h2>' in html and "<summary>Raw</summary>" in html
    assert f'href="{reverse("launch")}?again={run.pk}"' in html
    assert ">Retry</button>" in html and ">Cancel</button>" not in html


def test_a_finished_run_does_not_poll(operator_client, catalog, clock):
    html = operator_client.get(_urls(finished_run(catalog))["page"]).content.decode()
    assert 'id="run-status"' in html
    assert POLL not in html


def test_an_unfinished_run_polls_its_status_region(operator_client, catalog, api, clock):
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    html = operator_client.get(_urls(run)["page"]).content.decode()
    status_url = _urls(run)["status"]
    assert f'hx-get="{status_url}" {POLL} hx-swap="morph"' in html
    assert ">Cancel</button>" in html and ">Retry</button>" not in html


def test_only_a_page_with_javascript_says_it_updates_by_itself(
    operator_client, catalog, api, clock
):
    # Without JavaScript nothing polls: the promise is hidden (`html:not(.js) .js-only`).
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    html = operator_client.get(_urls(run)["page"]).content.decode()
    assert '<span class="muted js-only">— this page updates by itself.</span>' in html


def test_a_finished_run_without_a_cost_yet_says_so(operator_client, catalog, clock):
    run = finished_run(catalog, cost_usd=None)  # the worker fetches the cost after the finish
    html = operator_client.get(_urls(run)["page"]).content.decode()
    assert "<dt>LLM cost</dt><dd>not reported yet</dd>" in html


def test_the_fragment_stops_polling_once_the_run_finishes(operator_client, catalog, api, clock):
    run = make_run(catalog.workflow, api=api, synced_at=NOW - timedelta(seconds=5))
    url = _urls(run)["status"]
    running = operator_client.get(url, headers=HTMX).content.decode()
    assert running.lstrip().startswith('<section id="run-status"')
    assert POLL in running

    upstream = api.runs[str(run.cyberdesk_id)]
    upstream.update(status="success", output_data={"answer": 42}, ended_at=NOW.isoformat())
    clock.shift(timedelta(seconds=3))
    finished = operator_client.get(url, headers=HTMX).content.decode()
    assert POLL not in finished
    assert "Success" in finished
    assert "&quot;answer&quot;: 42" in finished  # outputs arrive with the last swap


def test_many_pollers_cause_one_api_call_per_interval(
    operator_client, staff_client, catalog, api, clock
):
    run = make_run(catalog.workflow, api=api, synced_at=NOW - timedelta(seconds=5))
    url = _urls(run)["status"]
    for client in (operator_client, staff_client, operator_client):
        assert client.get(url, headers=HTMX).status_code == 200
    assert len(api.calls("GET", f"/v1/runs/{run.cyberdesk_id}")) == 1
    clock.shift(timedelta(seconds=2))
    staff_client.get(url, headers=HTMX)
    assert len(api.calls("GET", f"/v1/runs/{run.cyberdesk_id}")) == 2


def test_query_counts_are_pinned(operator_client, catalog, api, clock, django_assert_num_queries):
    run = make_run(
        catalog.workflow,
        api=api,
        synced_at=NOW,
        model_option=catalog.model,
        prompt_mode="pinned",
        prompt_version=catalog.v1,
    )
    urls = _urls(run)
    operator_client.get(urls["page"])  # warm the session
    # session, user, permissions, run (+ relations), latest version, kept attempts, history,
    # 2× the Compare link's counterpart (same inputs, then any success); the run was refreshed
    # within the interval, so no claim is tried. tests/views/test_evidence.py shows it stays
    # so with many attempts and a long history.
    with django_assert_num_queries(9):
        assert operator_client.get(urls["page"]).status_code == 200
    # session, user, permissions, run
    with django_assert_num_queries(4):
        assert operator_client.get(urls["status"], headers=HTMX).status_code == 200


def test_a_poll_never_writes_its_session(operator_client, catalog, api, clock):
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    url = _urls(run)["status"]
    operator_client.get(url, headers=HTMX)  # warm the session

    with CaptureQueriesContext(connection) as queries:
        response = operator_client.get(url, headers=HTMX)

    assert response.status_code == 200
    session_queries = [q["sql"] for q in queries if "django_session" in q["sql"]]
    assert len(session_queries) == 1 and session_queries[0].lstrip().startswith("SELECT")
    assert "sessionid" not in response.cookies  # not saved, so not sent again


def test_with_sessions_in_a_shared_cache_a_poll_skips_the_session_query(
    settings, operator, catalog, api, clock, django_assert_num_queries
):
    # What settings choose when CACHE_URL names a shared cache (tests/test_settings.py).
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    poller = Client(enforce_csrf_checks=True)
    poller.force_login(operator)
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    url = _urls(run)["status"]
    poller.get(url, headers=HTMX)

    with django_assert_num_queries(3):  # user, permissions, run
        assert poller.get(url, headers=HTMX).status_code == 200


def test_a_finished_runs_fragment_reads_the_database_only(
    operator_client, catalog, api, clock, django_assert_num_queries
):
    run = finished_run(catalog, api=api)
    operator_client.get(_urls(run)["page"])
    # session, user, permissions, run, + the Attempts and History sections it brings along
    # out of band (the region's last render)
    with django_assert_num_queries(6):
        html = operator_client.get(_urls(run)["status"], headers=HTMX).content.decode()
    assert api.calls("GET", f"/v1/runs/{run.cyberdesk_id}") == []
    assert 'id="run-attempts" aria-labelledby="attempts-heading" hx-swap-oob="true"' in html
    assert 'id="run-history" aria-labelledby="history-heading" hx-swap-oob="true"' in html


# --- Actions ----------------------------------------------------------------------------------


def test_cancel_with_htmx_returns_the_finished_fragment(operator_client, catalog, api, clock):
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    response = _post(operator_client, _urls(run)["cancel"], headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="run-status"')
    assert "Cancelled" in html and POLL not in html
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_cancel_without_javascript_redirects_to_the_page(operator_client, catalog, api, clock):
    run = make_run(catalog.workflow, api=api, synced_at=NOW)
    response = _post(operator_client, _urls(run)["cancel"])
    assert response.status_code == 302
    assert response["Location"] == _urls(run)["page"]


def test_a_cancel_that_cannot_be_done_says_why(operator_client, catalog, api, clock):
    run = finished_run(catalog, api=api)
    html = _post(operator_client, _urls(run)["cancel"], headers=HTMX).content.decode()
    assert "This run has already finished." in html
    assert api.calls("PATCH", f"/v1/runs/{run.cyberdesk_id}") == []


def test_retry_starts_polling_again_and_keeps_the_run(operator_client, catalog, api, clock):
    run = finished_run(catalog, api=api, status=RunStatus.ERROR)
    api.runs[str(run.cyberdesk_id)]["status"] = "error"
    response = _post(operator_client, _urls(run)["retry"], headers=HTMX)
    # The whole page changes (Attempts, History): htmx is told to load it again.
    assert response["HX-Redirect"] == _urls(run)["page"]
    html = operator_client.get(_urls(run)["page"]).content.decode()
    run.refresh_from_db()
    assert POLL in html
    assert run.attempt == 2 and run.status == RunStatus.SCHEDULING
    assert Run.objects.count() == 1


def test_an_attachment_download_redirects_to_its_signed_url(operator_client, catalog, api, clock):
    run = finished_run(catalog, api=api)
    attachment_id = uuid.uuid4()
    api.attachments.append(
        {
            "id": str(attachment_id),
            "run_id": str(run.cyberdesk_id),
            "filename": "invoice.pdf",
            "content_type": "application/pdf",
            "attachment_type": "output",
            "size_bytes": 2048,
            "storage_path": "x",
            "created_at": NOW.isoformat(),
        }
    )
    page = operator_client.get(_urls(run)["page"]).content.decode()
    panel_url = reverse("run_attachments", args=[run.pk])
    assert f'hx-get="{panel_url}" hx-trigger="load"' in page  # loaded after the page
    panel = operator_client.get(panel_url, headers=HTMX).content.decode()
    download = _urls(run, attachment_id)["download"]
    assert f'<a href="{download}" download>invoice.pdf</a>' in panel
    response = operator_client.get(download)
    assert response.status_code == 302
    assert response["Location"].startswith(f"https://files.test/{attachment_id}")
    assert operator_client.get(_urls(run)["download"]).status_code == 404
