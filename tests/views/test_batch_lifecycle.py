"""A batch tells the truth (issue 14): its lifecycle (planned → sending → running → finished,
or cancelled) in the list and on its page, one breakdown of its runs by state that adds up to its
size, a bar in segments by outcome, and no stale "Batch planned" once it is cancelled."""

import pytest
from django.urls import reverse

from launcher.models import Batch
from launcher.selectors import batch_lifecycle, batch_progress
from tests.launch_api import make_batch

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


@pytest.mark.parametrize(
    "state, total, queued, finished, expected",
    [
        (Batch.State.SUBMITTING, 5, 5, 0, "planned"),
        (Batch.State.SUBMITTING, 5, 2, 1, "sending"),
        (Batch.State.SUBMITTED, 5, 0, 3, "running"),
        (Batch.State.SUBMITTED, 5, 0, 5, "finished"),
        (Batch.State.CANCELLED, 5, 0, 5, "cancelled"),
        (Batch.State.CANCELLED, 5, 0, 2, "cancelled"),
    ],
)
def test_the_lifecycle_comes_from_the_state_and_the_counts(
    state, total, queued, finished, expected
):
    assert batch_lifecycle(state=state, total=total, queued=queued, finished=finished) == expected


def test_a_finished_batch_says_finished_in_the_list_not_submitted(catalog, operator_client):
    make_batch(catalog.workflow, state=Batch.State.SUBMITTED, success=2, task_failed=1)

    html = operator_client.get(reverse("batch_list")).content.decode()

    assert '<span class="badge lifecycle-finished">Finished</span>' in html
    assert "Submitted" not in html


def test_the_list_shows_each_stage(catalog, operator_client):
    make_batch(catalog.workflow, queued=3)
    make_batch(catalog.workflow, queued=1, running=1)
    make_batch(catalog.workflow, state=Batch.State.SUBMITTED, running=2)
    make_batch(catalog.workflow, state=Batch.State.CANCELLED, cancelled=2)

    html = operator_client.get(reverse("batch_list")).content.decode()

    for label in ("Planned", "Sending", "Running", "Cancelled"):
        assert f">{label}</span>" in html


def test_the_list_costs_the_same_queries_with_more_batches(
    catalog, operator_client, django_assert_num_queries
):
    make_batch(catalog.workflow, queued=1)
    operator_client.get(reverse("batch_list"))
    with django_assert_num_queries(4) as few:
        operator_client.get(reverse("batch_list"))
    for _ in range(5):
        make_batch(catalog.workflow, queued=2, success=2)
    with django_assert_num_queries(len(few.captured_queries)):
        operator_client.get(reverse("batch_list"))


def test_the_breakdown_adds_up_to_the_batch_size(catalog):
    batch = make_batch(
        catalog.workflow,
        state=Batch.State.SUBMITTED,
        queued=2,
        success=3,
        task_failed=1,
        error=1,
        cancelled=2,
        running=1,
        scheduling=1,
    )

    progress = batch_progress(batch)

    counts = {segment.key: segment.count for segment in progress.segments}
    assert counts == {
        "succeeded": 3,
        "failed": 2,
        "cancelled": 2,
        "rejected": 0,
        "running": 2,
        "queued": 2,
        "unknown": 0,
    }
    assert sum(counts.values()) == progress.total == 11
    assert sum(segment.percent for segment in progress.segments) == pytest.approx(100, abs=0.01)


def test_a_batch_where_every_run_failed_has_no_green_in_its_bar(catalog, operator_client):
    batch = make_batch(catalog.workflow, state=Batch.State.SUBMITTED, task_failed=3, cancelled=1)

    html = operator_client.get(reverse("batch_detail", args=[batch.pk])).content.decode()

    assert 'class="segment segment-failed" x="0.0%" y="0" width="75.0%"' in html
    assert 'class="segment segment-cancelled" x="75.0%" y="0" width="25.0%"' in html
    assert "segment segment-succeeded" not in html
    assert 'aria-label="4 runs: 3 failed, 1 cancelled"' in html
    assert "Submitted" not in html  # a running total, not a state: no longer mixed in


def test_a_cancelled_batch_says_so_and_clears_the_planned_message(catalog, operator_client):
    batch = make_batch(catalog.workflow, state=Batch.State.CANCELLED, cancelled=2, success=1)

    fragment = operator_client.get(reverse("batch_detail", args=[batch.pk]), headers=HTMX)
    page = operator_client.get(reverse("batch_detail", args=[batch.pk]))

    html = fragment.content.decode()
    assert "This batch was cancelled" in html
    assert '<div id="messages" hx-swap-oob="true"></div>' in html  # the stale banner goes
    assert "This batch was cancelled" in page.content.decode()


def test_a_running_batch_keeps_its_messages(catalog, operator_client):
    batch = make_batch(catalog.workflow, state=Batch.State.SUBMITTED, running=2)

    html = operator_client.get(reverse("batch_detail", args=[batch.pk]), headers=HTMX)

    assert "hx-swap-oob" not in html.content.decode()
    assert "This batch was cancelled" not in html.content.decode()


def test_an_empty_median_duration_is_a_quiet_dash_like_the_other_columns(catalog, operator_client):
    batch = make_batch(catalog.workflow, queued=2)
    Batch.objects.filter(pk=batch.pk).update(is_matrix=True)

    html = operator_client.get(reverse("batch_detail", args=[batch.pk])).content.decode()

    assert '<td class="num"><span class="muted">—</span></td>' in html
    assert '<td class="num">—</td>' not in html  # no bare (bolder) dash
