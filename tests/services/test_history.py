"""`manage.py seed_history --runs N`: realistic finished runs, bulk-inserted, idempotent-ish."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from launcher.models import (
    TERMINAL_STATUSES,
    Batch,
    PromptLabel,
    PromptVersion,
    Run,
    RunStatus,
    Workflow,
)
from launcher.services.history import BIG_BATCH_NAME, MESSAGE_STEPS, history_seed
from tests.launch_api import make_model, make_workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def mirror(catalog):
    make_workflow(name="Claims check", has_post_run_checks=True)
    make_model("GPT Operator")
    return catalog


def test_it_adds_realistic_finished_runs_across_the_catalog(mirror):
    report = history_seed(runs=600, big_batch_runs=200)

    runs = Run.objects.all()
    assert report.added == runs.count() == 600
    assert not runs.exclude(status__in=TERMINAL_STATUSES).exists()  # every one finished
    success = runs.filter(status=RunStatus.SUCCESS).first()
    assert len(success.message_history) == MESSAGE_STEPS
    assert success.output_data["inputs"] == success.input_values
    assert success.usage_metadata["input_tokens"] > 0 and success.cost_usd > 0
    assert success.attachments == []  # stored: the run page asks the API for nothing
    assert "$api_key" not in success.input_values  # secrets are never stored
    assert runs.values("workflow").distinct().count() == Workflow.objects.count()
    assert runs.values("model_option").distinct().count() >= 3  # models and workflow default
    assert runs.filter(prompt_version__isnull=True).exists()  # the stored prompt too
    assert runs.values("launched_by").distinct().count() == 3
    assert PromptVersion.objects.filter(workflow=mirror.workflow).count() >= 3
    assert PromptLabel.objects.filter(name="production").count() == Workflow.objects.count()
    first, last = runs.order_by("created_at").first(), runs.order_by("created_at").last()
    assert (last.created_at - first.created_at).days >= 80  # spread over the last 90 days


def test_it_makes_one_big_matrix_batch_and_small_ones(mirror):
    report = history_seed(runs=1_000, big_batch_runs=400)

    big = Batch.objects.get(name=BIG_BATCH_NAME)
    assert report.big_batch_id == big.pk and big.is_matrix
    assert big.runs.count() == 400
    cells = big.runs.values("model_option", "prompt_version").annotate(n=Count("id"))
    assert len(cells) >= 4 and all(cell["n"] == 400 // len(cells) for cell in cells)
    assert Batch.objects.exclude(pk=big.pk).annotate(n=Count("runs")).filter(n__gt=0).exists()


def test_running_it_again_adds_only_what_is_missing(mirror):
    history_seed(runs=300, big_batch_runs=100)
    again = history_seed(runs=300, big_batch_runs=100)
    more = history_seed(runs=450, big_batch_runs=100)

    assert again.added == 0
    assert more.added == 150 and Run.objects.count() == 450
    assert Batch.objects.filter(name=BIG_BATCH_NAME).count() == 1
    newest_first = list(Run.objects.order_by("-created_at").values_list("pk", flat=True)[:150])
    assert min(newest_first) > 300  # the second call continued the timeline


def test_the_command_reports_and_refuses_an_empty_mirror(mirror, settings):
    out = StringIO()
    call_command("seed_history", "--runs", "120", "--big-batch", "20", stdout=out)
    assert "Added 120 finished runs" in out.getvalue()
    call_command("seed_history", "--runs", "120", stdout=out)
    assert "already holds 120 seeded runs" in out.getvalue()


def test_without_workflows_it_says_what_to_do(db, settings):
    from tests.fake_cyberdesk import serve

    with serve(settings) as api:
        api.fail_with = 503
        with pytest.raises(CommandError, match="sync_workflows"):
            call_command("seed_history", "--runs", "10", stdout=StringIO(), stderr=StringIO())


def test_on_postgresql_the_seeded_tables_are_analyzed_so_pages_are_planned_on_real_counts(
    mirror,
):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("table statistics are PostgreSQL's (SQLite plans from its indexes)")
    history_seed(runs=600, big_batch_runs=200)

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [Run._meta.db_table])
        (estimated_rows,) = cursor.fetchone()
    assert estimated_rows == Run.objects.count()  # a fresh table says -1 until analyzed


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_seeded_history_is_vacuumed_so_index_only_scans_skip_the_table(mirror):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the visibility map is PostgreSQL's")
    history_seed(runs=600, big_batch_runs=200)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relpages, relallvisible FROM pg_class WHERE relname = %s",
            [Run._meta.db_table],
        )
        pages, all_visible = cursor.fetchone()
    assert pages > 0 and all_visible == pages  # a bulk load leaves 0 until vacuumed
