"""The prompt pages: who may read them, stats per version, the diff region, pinned queries."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from launcher.models import Run, RunStatus, Workflow
from launcher.services.prompt_rollups import prompt_rollups_rebuild
from launcher.services.prompts import prompt_label_move, prompt_version_create
from launcher.version_stats import prompt_version_stats
from tests.csrf import csrf_headers

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def workflow(db):
    return Workflow.objects.create(
        id=uuid.uuid4(),
        name="Invoices",
        main_prompt="Stored {portal}",
        input_schema={"type": "object", "properties": {"portal": {}}},
        synced_at=timezone.now(),
    )


@pytest.fixture
def versions(workflow, staff):
    v1 = prompt_version_create(workflow=workflow, text="Open {portal}\nSave it", note="first")
    v2 = prompt_version_create(workflow=workflow, text="Open {portal}\nSave it as PDF", note="pdf")
    v3 = prompt_version_create(workflow=workflow, text="Use {unknown}", note="broken", author=staff)
    prompt_label_move(workflow=workflow, name="staging", version=v2, user=staff, reason="try")
    return v1, v2, v3


def add_run(workflow, version, status, seconds=None):
    start = timezone.now() - timedelta(hours=1)
    return Run.objects.create(
        workflow=workflow,
        prompt_mode="pinned",
        prompt_version=version,
        status=status,
        started_at=start if seconds is not None else None,
        ended_at=start + timedelta(seconds=seconds) if seconds is not None else None,
    )


def page_url(workflow, **params):
    url = reverse("prompt_workflow", args=[workflow.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


# --- Who may read -------------------------------------------------------------------------------


def test_operators_and_prompt_viewers_may_read_outsiders_may_not(
    operator_client, outsider_client, django_user_model, workflow, versions
):
    viewer = django_user_model.objects.create_user("vera-viewer", password="pw")
    viewer.user_permissions.add(
        Permission.objects.get(content_type__app_label="launcher", codename="view_promptversion")
    )
    viewer_client = Client(enforce_csrf_checks=True)
    viewer_client.force_login(viewer)
    for url in (reverse("prompt_index"), page_url(workflow), page_url(workflow, a=1, b=2)):
        assert operator_client.get(url).status_code == 200
        assert viewer_client.get(url).status_code == 200
        assert outsider_client.get(url).status_code == 403
        assert outsider_client.get(url, headers=HTMX).status_code == 403


def test_the_pages_are_read_only(operator_client, workflow):
    # With a valid token: the 405 is the view's, not the CSRF middleware's 403.
    token = csrf_headers(operator_client)
    assert operator_client.post(reverse("prompt_index"), headers=token).status_code == 405
    assert operator_client.post(page_url(workflow), headers=token).status_code == 405


def test_an_unknown_workflow_is_a_404(operator_client):
    assert operator_client.get(page_url(Workflow(id=uuid.uuid4()))).status_code == 404


# --- The index ----------------------------------------------------------------------------------


def test_the_index_lists_workflows_with_version_counts_and_labels(
    operator_client, workflow, versions, django_assert_num_queries
):
    Workflow.objects.create(id=uuid.uuid4(), name="Empty one", synced_at=timezone.now())
    # session, user, permissions (user + groups, one query), freshness check, workflows, their
    # labels
    with django_assert_num_queries(6):
        response = operator_client.get(reverse("prompt_index"))
    text = response.content.decode()
    assert "Invoices" in text and "Empty one" in text
    assert "staging → v2" in text
    counts = {w.name: w.version_count for w in response.context["workflows"]}
    assert counts == {"Invoices": 3, "Empty one": 0}


# --- One workflow -------------------------------------------------------------------------------


def test_each_version_shows_its_labels_runs_success_rate_and_median_duration(workflow, versions):
    v1, v2, v3 = versions
    add_run(workflow, v2, RunStatus.SUCCESS, seconds=60)
    add_run(workflow, v2, RunStatus.SUCCESS, seconds=120)
    add_run(workflow, v2, RunStatus.TASK_FAILED, seconds=600)
    add_run(workflow, v2, RunStatus.CANCELLED)
    add_run(workflow, v1, RunStatus.ERROR, seconds=30)
    stats = {row.version.number: row for row in prompt_version_stats(workflow)}
    assert stats[2].labels == ["staging"] and stats[3].is_latest
    assert (stats[2].runs, stats[2].succeeded, stats[2].finished) == (4, 2, 3)
    assert stats[2].success_percent == 67
    assert stats[2].median_duration == timedelta(seconds=120)
    assert stats[2].median_duration_display == "2m 00s"
    assert stats[1].success_percent == 0 and stats[1].median_duration_display == "30s"
    assert stats[3].runs == 0 and stats[3].success_rate is None
    assert stats[3].warnings == ["{unknown} is not defined in the workflow's input schema."]


def test_the_page_shows_versions_warnings_history_and_the_default_diff(
    operator_client, workflow, versions, django_assert_num_queries
):
    v1, v2, v3 = versions
    add_run(workflow, v2, RunStatus.SUCCESS, seconds=60)
    # session, user, perms (one query), workflow, labels, versions, numbers, medians (the duration
    # buckets, then the probes), canaries, label history
    with django_assert_num_queries(11):
        response = operator_client.get(page_url(workflow))
    assert response.status_code == 200
    text = response.content.decode()
    assert "v3" in text and "broken" in text and "Variable problems" in text
    assert "{unknown} is not defined in the workflow&#x27;s input schema." in text
    assert "100%" in text and "1m 00s" in text
    assert "Label history" in text and "try" in text
    # Default comparison: the previous version against the newest.
    assert (response.context["a"], response.context["b"]) == (2, 3)
    assert 'id="prompt-diff"' in text


def test_the_page_query_count_does_not_grow_with_runs_or_versions(
    operator_client, workflow, versions, django_assert_num_queries
):
    for index in range(10):
        version = prompt_version_create(workflow=workflow, text=f"text {index}")
        add_run(workflow, version, RunStatus.SUCCESS, seconds=index + 1)
    with django_assert_num_queries(11):
        operator_client.get(page_url(workflow))


@pytest.mark.parametrize("runs", [3, 300])
def test_the_page_query_count_is_the_same_with_3_and_300_runs(
    operator_client, workflow, versions, django_assert_num_queries, runs
):
    # The numbers come from the kept per-version counters and the medians from the kept
    # duration buckets and one bucket of the duration index: no read grows with the history.
    Run.objects.bulk_create(
        Run(
            workflow=workflow,
            prompt_mode="pinned",
            prompt_version=versions[n % 3],
            status=RunStatus.SUCCESS if n % 4 else RunStatus.ERROR,
            duration_ms=1000 * (n + 1),
        )
        for n in range(runs)
    )
    prompt_rollups_rebuild()  # bulk_create skips the hooks that keep the counters
    with django_assert_num_queries(11):
        response = operator_client.get(page_url(workflow))
    assert sum(row.runs for row in response.context["stats"]) == runs


def test_two_versions_are_compared_side_by_side(operator_client, workflow, versions):
    response = operator_client.get(page_url(workflow, a=1, b=2))
    rows = response.context["diff"]
    assert [(row.kind, row.left, row.right) for row in rows] == [
        ("equal", "Open {portal}", "Open {portal}"),
        ("replace", "Save it", "Save it as PDF"),
    ]
    assert response.context["left_title"] == "v1" and response.context["right_title"] == "v2"


def test_the_diff_region_is_an_htmx_fragment_with_pinned_queries(
    operator_client, workflow, versions, django_assert_num_queries
):
    # session, user, perms, workflow, versions: the fragment needs no numbers
    with django_assert_num_queries(5):
        response = operator_client.get(page_url(workflow, a=3, b=1), headers=HTMX)
    text = response.content.decode()
    assert text.strip().startswith('<section id="prompt-diff"')
    assert "<html" not in text
    assert "Use {unknown}" in text and "<code>Save it</code>" in text


def test_diff_text_is_escaped(operator_client, workflow, staff):
    prompt_version_create(workflow=workflow, text="<script>alert(1)</script>")
    prompt_version_create(workflow=workflow, text="<b>bold</b>")
    text = operator_client.get(page_url(workflow, a=1, b=2)).content.decode()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.parametrize(
    "params",
    [{"a": "x", "b": "99"}, {"a": "-1"}, {"b": ""}, {"a": "²"}, {"b": "99999999999999999999999"}],
)
def test_bad_comparison_parameters_fall_back_to_the_default(
    operator_client, workflow, versions, params
):
    response = operator_client.get(page_url(workflow, **params))
    assert response.status_code == 200
    assert (response.context["a"], response.context["b"]) == (2, 3)


def test_a_workflow_without_versions(operator_client, workflow):
    response = operator_client.get(page_url(workflow))
    assert response.status_code == 200
    assert "No versions yet." in response.content.decode()
