"""The evidence pages: the run page's Attempts / Timeline / History / Compare, the attempt page
`/runs/<id>/attempts/<n>/` and its images, and the compare page `/runs/compare/`."""

import base64
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from launcher.models import Batch, Run, RunAttempt, RunEvent, RunStatus
from launcher.sandbox.screens import screenshot_png
from tests.fake_cyberdesk import serve
from tests.launch_api import NOW, make_run

pytestmark = pytest.mark.django_db
PNG = screenshot_png(seed="t", step=1)
HISTORY = [
    {"role": "user", "content": [{"type": "text", "text": "Look up c-1."}]},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Clicking."},
            {
                "type": "tool_use",
                "id": "t1",
                "name": "computer",
                "input": {"action": "left_click", "coordinate": [10, 20]},
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": base64.b64encode(PNG).decode(),
                        },
                    }
                ],
            }
        ],
    },
]


@pytest.fixture
def api(settings):
    with serve(settings) as fake:
        yield fake


def finished(catalog, **fields):
    values = {
        "status": RunStatus.SUCCESS,
        "model_option": catalog.model,
        "prompt_mode": "pinned",
        "prompt_version": catalog.v1,
        "prompt_sha256": catalog.v1.sha256,
        "input_values": {"customer_id": "c-1", "age": 40, "notify": True, "tags": ["vip", "new"]},
        "sensitive_input_keys": ["api_key"],
        "started_at": NOW - timedelta(seconds=40),
        "ended_at": NOW - timedelta(seconds=12),
        "output_data": {"invoice": "INV-1", "total": 12.5},
        "post_run_checks": [{"name": "Has invoice", "status": "success"}],
        "usage_metadata": {
            "total_agentic_steps": 7,
            "total_cached_steps": 2,
            "input_tokens": 12000,
            "output_tokens": 800,
        },
        "message_history": HISTORY,
        "cost_usd": Decimal("0.05"),
        "synced_at": NOW,
    }
    values.update(fields)
    return make_run(catalog.workflow, **values)


def keep_attempts(run, count, **fields):
    """`count` kept attempts before the run's current one (as `run_retry` leaves them)."""
    for number in range(1, count + 1):
        RunAttempt.objects.create(
            run=run,
            number=number,
            status=fields.get("status", RunStatus.TASK_FAILED),
            started_at=NOW - timedelta(minutes=10),
            ended_at=NOW - timedelta(minutes=9, seconds=32),
            output_data=fields.get("output_data", {"invoice": None, "total": 12.5}),
            errors=["Could not find the invoice"],
            usage_metadata={"total_agentic_steps": 3},
            message_history=HISTORY[:2],
            cost_usd=Decimal("0.02"),
            attachments=[{"filename": "old.csv", "attachment_type": "output", "size_bytes": 9}],
        )
    Run.objects.filter(pk=run.pk).update(attempt=count + 1)
    run.attempt = count + 1


def add_history(run, count):
    RunEvent.objects.bulk_create(
        RunEvent(run=run, kind="status", source="poll", detail={"from": "a", "to": "b"}, at=NOW)
        for _ in range(count)
    )


# --- Access -------------------------------------------------------------------------------------


def test_every_evidence_page_needs_a_login_and_the_launch_permission(
    client, outsider_client, catalog
):
    run = finished(catalog)
    urls = [
        reverse("run_attempt_detail", args=[run.pk, 1]),
        reverse("run_attempt_image", args=[run.pk, 1, "2.0.0"]),
        reverse("run_compare") + f"?a={run.pk}&b={run.pk}",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
        assert outsider_client.get(url).status_code == 403


# --- The run page -------------------------------------------------------------------------------


def test_the_run_page_shows_attempts_timeline_usage_inputs_and_history(
    operator_client, operator, catalog, clock
):
    batch = Batch.objects.create(workflow=catalog.workflow)
    run = finished(catalog, batch=batch, batch_row=3, launched_by=operator)
    keep_attempts(run, 1)
    RunEvent.objects.create(
        run=run,
        kind="launched",
        source="user",
        actor=operator,
        at=NOW,
        detail={"model": "Claude Sonnet", "prompt": "v1", "prompt_version": 1},
    )
    RunEvent.objects.create(
        run=run,
        kind="status",
        source="webhook",
        at=NOW,
        detail={"from": "running", "to": "task_failed"},
    )
    RunEvent.objects.create(
        run=run,
        kind="retried",
        source="user",
        actor=operator,
        at=NOW,
        attempt=2,
        detail={"previous_attempt": 1},
    )

    html = operator_client.get(reverse("run_detail", args=[run.pk])).content.decode()

    # Attempts, each opening its own page.
    assert '<h2 id="attempts-heading">Attempts</h2>' in html
    first = reverse("run_attempt_detail", args=[run.pk, 1])
    assert f'<a href="{first}">Attempt 1 · Task failed · 28s · $0.0200</a>' in html
    assert "Attempt 2 · Success · 28s · $0.0500</a>" in html
    # Timeline, usage as numbers.
    assert '<h2 id="timeline-heading">Timeline</h2>' in html and "click at 10, 20" in html
    for label, value in [
        ("Agentic steps", "7"),
        ("Cached steps", "2"),
        ("Tokens in", "12,000"),
        ("Tokens out", "800"),
        ("Cost", "$0.0500"),
    ]:
        assert f'<dt>{label}</dt><dd class="num-value">{value}</dd>' in html
    # Inputs as a person reads them: unquoted, lists as lists, yes/no, secrets set / not set.
    assert '<span class="input-text">c-1</span>' in html and '"c-1"' not in html
    assert "<li>vip</li><li>new</li>" in html
    assert '<span class="input-text">yes</span>' in html and "True" not in html
    assert '<span class="badge secret-set">set</span>' in html
    # History, with who and where from.
    assert '<h2 id="history-heading">History</h2>' in html
    assert "Launched by olivia-operator · model Claude Sonnet · prompt v1" in html
    assert "Status Running → <strong>Task failed</strong>" in html and "(via webhook)" in html
    assert "Retried by olivia-operator: attempt 2 started" in html
    # The batch is a link; the Compare link defaults to the previous attempt.
    assert f'<a href="{reverse("batch_detail", args=[batch.pk])}">Batch {batch.pk}</a>' in html
    compare = reverse("run_compare") + f"?a={run.pk}.1&amp;b={run.pk}"
    assert f'<a class="button" href="{compare}">Compare</a>' in html
    assert "Retry starts attempt 3 of this run; attempt 2's results stay here." in html


def test_a_secret_not_given_reads_not_set_and_a_file_by_its_field(operator_client, catalog):
    run = finished(
        catalog,
        sensitive_input_keys=[],
        file_input_names=["scan.pdf"],
        file_input_fields=[{"field": "invoice_pdf", "filename": "scan.pdf"}],
    )
    html = operator_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert '<span class="mono">$api_key</span>' in html
    assert '<span class="badge secret-unset">not set</span>' in html
    assert '<span class="mono">invoice_pdf</span>' in html
    assert '<span class="file-name">scan.pdf</span>' in html


def test_the_compare_link_falls_back_to_same_inputs_then_any_success(operator_client, catalog):
    other_inputs = finished(catalog, input_values={"customer_id": "zz"})
    run = finished(catalog)
    url = reverse("run_detail", args=[run.pk])
    assert f"?a={other_inputs.pk}&amp;b={run.pk}" in operator_client.get(url).content.decode()
    same_inputs = finished(catalog, input_values=dict(run.input_values))
    newer_other = finished(catalog, input_values={"customer_id": "yy"})
    finished(catalog, input_values=dict(run.input_values), status=RunStatus.ERROR)
    html = operator_client.get(url).content.decode()
    assert f"?a={same_inputs.pk}&amp;b={run.pk}" in html
    assert newer_other.pk > same_inputs.pk


def test_the_run_pages_queries_do_not_grow_with_attempts_or_history(
    operator_client, catalog, clock, django_assert_num_queries
):
    small = finished(catalog, input_values={"customer_id": "a"})
    long_history = finished(catalog, input_values={"customer_id": "b"})
    add_history(long_history, 300)
    big = finished(catalog, input_values={"customer_id": "c"})
    keep_attempts(big, 8)
    add_history(big, 300)
    operator_client.get(reverse("run_detail", args=[small.pk]))  # warm the session
    for run in (small, long_history):
        # session, user, permissions, run, latest version, attempts, history, 2× counterpart
        # (none with the same inputs, then the newest success)
        with django_assert_num_queries(9):
            operator_client.get(reverse("run_detail", args=[run.pk]))
    # With earlier attempts the counterpart is the previous one: no query for it.
    with django_assert_num_queries(7):
        operator_client.get(reverse("run_detail", args=[big.pk]))
    html = operator_client.get(reverse("run_detail", args=[big.pk])).content.decode()
    assert "Older entries are not shown." in html
    assert html.count("Attempt ") >= 9


# --- The attempt page ---------------------------------------------------------------------------


def test_an_earlier_attempt_has_its_own_page_with_the_same_detail(operator_client, catalog):
    run = finished(catalog)
    keep_attempts(run, 1)
    html = operator_client.get(reverse("run_attempt_detail", args=[run.pk, 1])).content.decode()
    assert f"<h1>Run {run.pk} · attempt 1</h1>" in html
    assert "Task failed" in html and "Could not find the invoice" in html
    assert "old.csv" in html and "deletes an attempt's output files" in html
    assert '<h2 id="timeline-heading">Timeline</h2>' in html and "click at 10, 20" in html
    assert "<dt>Agentic steps</dt>" in html
    assert '<span class="input-text">c-1</span>' in html  # the inputs it ran with
    assert '<h2 id="attempts-heading">Attempts</h2>' in html
    assert f"?a={run.pk}&amp;b={run.pk}.1" in html  # compare with the current attempt
    # The current attempt has a page too; a number the run never had is 404.
    current = operator_client.get(reverse("run_attempt_detail", args=[run.pk, 2]))
    assert current.status_code == 200 and "the current attempt" in current.content.decode()
    assert operator_client.get(reverse("run_attempt_detail", args=[run.pk, 3])).status_code == 404
    assert operator_client.get(reverse("run_attempt_detail", args=[run.pk, 0])).status_code == 404


def test_the_attempt_page_is_pinned_whatever_the_attempts(
    operator_client, catalog, django_assert_num_queries
):
    run = finished(catalog)
    keep_attempts(run, 6)
    operator_client.get(reverse("run_attempt_detail", args=[run.pk, 1]))  # warm the session
    # session, user, permissions, run, the attempt, the attempt list
    with django_assert_num_queries(6):
        operator_client.get(reverse("run_attempt_detail", args=[run.pk, 3]))
    # the current attempt: no attempt row to read
    with django_assert_num_queries(5):
        operator_client.get(reverse("run_attempt_detail", args=[run.pk, 7]))


def test_a_timeline_image_is_served_from_the_stored_history(operator_client, catalog):
    run = finished(catalog)
    response = operator_client.get(reverse("run_attempt_image", args=[run.pk, 1, "2.0.0"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png" and response.content == PNG
    assert "max-age" in response["Cache-Control"]
    assert (
        operator_client.get(reverse("run_attempt_image", args=[run.pk, 1, "1.0"])).status_code
        == 404
    )
    for bad in ("2", "2.0.0.0", "2.x.0", "-1.0", "２.0.0", "9999999.0"):
        assert operator_client.get(f"/runs/{run.pk}/attempts/1/images/{bad}").status_code == 404
    assert (
        operator_client.get(reverse("run_attempt_image", args=[run.pk, 5, "2.0.0"])).status_code
        == 404
    )


# --- The compare page ---------------------------------------------------------------------------


def test_two_runs_side_by_side(operator_client, catalog):
    a = finished(catalog)
    b = finished(
        catalog,
        model_option=None,
        prompt_version=catalog.v2,
        input_values={"customer_id": "c-2", "age": 40, "notify": True, "tags": ["vip", "new"]},
        output_data={"invoice": "INV-2", "total": 12.5, "extra": [1]},
        status=RunStatus.TASK_FAILED,
        errors=["Gave up"],
    )
    url = reverse("run_compare") + f"?a={a.pk}&b={b.pk}"
    html = operator_client.get(url).content.decode()

    assert f"Run {a.pk} · attempt 1" in html and f"Run {b.pk} · attempt 1" in html
    assert "Claude Sonnet" in html and "Workflow default" in html
    assert '<table class="diff">' in html  # the two prompt texts, line by line
    assert "v1: look up {customer_id} aged {age}." in html
    assert (
        '<th scope="row">customer_id <span class="diff-flag">differs</span></th>'
        "<td>c-1</td><td>c-2</td>" in html
    )
    assert '<th scope="row">$api_key</th><td>set</td><td>set</td>' in html  # key only
    assert '<code>invoice</code> <span class="diff-flag">changed</span>' in html
    assert '<code>extra[0]</code> <span class="diff-flag">added</span>' in html
    assert "2 values differ." in html
    assert "Gave up" in html and "Task failed" in html


def test_two_attempts_of_one_run(operator_client, catalog):
    run = finished(catalog)
    keep_attempts(run, 1)
    html = operator_client.get(
        reverse("run_compare") + f"?a={run.pk}.1&b={run.pk}.2"
    ).content.decode()
    assert f"Run {run.pk} · attempt 1" in html and f"Run {run.pk} · attempt 2" in html
    assert "Both used the same prompt text." in html
    assert "Could not find the invoice" in html
    assert '<code>invoice</code> <span class="diff-flag">changed</span>' in html
    assert "<td>$0.0200</td><td>$0.0500</td>" in html


def test_the_compare_page_is_pinned_whatever_the_histories(
    operator_client, catalog, django_assert_num_queries
):
    small, big = finished(catalog), finished(catalog, message_history=HISTORY * 50)
    keep_attempts(big, 5)
    url = reverse("run_compare")
    operator_client.get(url)  # warm the session
    # session, user, permissions, both runs, the kept attempt(s)
    with django_assert_num_queries(5):
        operator_client.get(f"{url}?a={small.pk}&b={big.pk}.2")
    with django_assert_num_queries(5):
        operator_client.get(f"{url}?a={big.pk}.1&b={big.pk}.4")
    with django_assert_num_queries(4):  # two current attempts: no attempt rows
        operator_client.get(f"{url}?a={small.pk}&b={big.pk}")


@pytest.mark.parametrize(
    "query, field, message",
    [
        ("?a=abc&b=1", "a", "Enter a run number"),
        ("?a=1&b=99999", "b", "There is no run 99999."),
        ("?a=1.7&b=1", "a", "has no attempt 7"),
        ("?a=1&b=", "b", "Enter a run to compare."),
        ("?a=%00&b=1.0", "a", "Enter a run number"),
        ("?a=99999999999999999999&b=1", "a", "Enter a run number"),
    ],
)
def test_a_bad_reference_comes_back_with_its_message_next_to_the_field(
    operator_client, catalog, query, field, message
):
    run = finished(catalog)
    response = operator_client.get(reverse("run_compare") + query.replace("=1", f"={run.pk}"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="compare-{field}-error">' in html and message in html


def test_the_empty_compare_page_is_a_form(operator_client):
    response = operator_client.get(reverse("run_compare"))
    assert response.status_code == 200
    assert (
        'name="a"' in response.content.decode() and "field-error" not in response.content.decode()
    )


# --- Compare selected on the runs list ---------------------------------------------------------


def _bulk(client, **data):
    client.get(reverse("run_list"))
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    return client.post(reverse("run_bulk_action"), data)


def test_compare_selected_opens_the_two_ticked_runs(operator_client, catalog):
    older, newer = finished(catalog), finished(catalog)
    response = _bulk(operator_client, action="compare", run=[newer.pk, older.pk])
    assert response.status_code == 302
    assert response["Location"] == reverse("run_compare") + f"?a={older.pk}&b={newer.pk}"
    assert (
        'value="compare">Compare selected</button>'
        in operator_client.get(reverse("run_list")).content.decode()
    )


def test_compare_selected_needs_exactly_two(operator_client, catalog):
    runs = [finished(catalog) for _ in range(3)]
    response = _bulk(
        operator_client, action="compare", run=[r.pk for r in runs], query="status=success"
    )
    assert response["Location"] == reverse("run_list") + "?status=success"
    page = operator_client.get(response["Location"]).content.decode()
    assert "Tick exactly two runs to compare them." in page
