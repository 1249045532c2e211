"""A 10,000-run batch's page reads indexes, not runs (docs/benchmarks.md, "batchpage").

- Failure clusters read the batch's failed runs through one index: (batch, status,
  failure_key, cyberdesk_id) serves the totals and the largest clusters index-only and finds
  the failed runs still without a key by a seek. It replaces (batch, failure_key), which made
  the "runs without a key" check read every non-failed run of the batch (their key is "" too).
- The batch grid's per-run numbers (checks passed and failed, agentic and cached steps) are
  stored columns, backfilled here in one UPDATE from the same JSON expressions the grid used to
  aggregate, and run_batch_cell_duration covers them: the grid's GROUP BY reads no run row.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Coalesce

from launcher.db_json import JsonArrayCount, JsonNumber

CELL_INDEX_FIELDS = [
    "batch",
    "model_option",
    "prompt_version",
    "duration_ms",
    "status",
    "cost_usd",
    "checks_passed",
    "checks_failed",
    "agentic_steps",
    "cached_steps",
]


def backfill_cell_numbers(apps, schema_editor):
    Run = apps.get_model("launcher", "Run")
    Run.objects.update(
        checks_passed=Coalesce(JsonArrayCount("post_run_checks", "status", "success"), 0),
        checks_failed=Coalesce(JsonArrayCount("post_run_checks", "status", "failed"), 0),
        agentic_steps=JsonNumber("usage_metadata", "total_agentic_steps"),
        cached_steps=JsonNumber("usage_metadata", "total_cached_steps"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("launcher", "0013_flat_stats_merge_polish"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The new index first, so the clusters always have one.
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["batch", "status", "failure_key", "cyberdesk_id"],
                name="run_batch_failed_key",
            ),
        ),
        migrations.RemoveIndex(model_name="run", name="run_batch_failure"),
        migrations.AddField(
            model_name="run",
            name="checks_passed",
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="run",
            name="checks_failed",
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="run",
            name="agentic_steps",
            field=models.FloatField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="cached_steps",
            field=models.FloatField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(backfill_cell_numbers, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="run", name="run_batch_cell_duration"),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=CELL_INDEX_FIELDS, name="run_batch_cell_duration"),
        ),
    ]
