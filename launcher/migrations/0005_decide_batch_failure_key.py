"""Run.failure_key (the batch page's failure clusters) and the indexes of the batch page's
"By input row" pages and clusters; existing failed runs get their key."""

from django.db import migrations, models

from launcher import failures


def fill_failure_keys(apps, schema_editor):
    Run = apps.get_model("launcher", "Run")
    failed = Run.objects.filter(status__in=failures.FAILED_STATUSES).only(
        "id", "status", "errors", "post_run_checks"
    )
    batch = []
    for run in failed.iterator(chunk_size=2000):
        run.failure_key = failures.failure_key(
            status=run.status, errors=run.errors, post_run_checks=run.post_run_checks
        )
        batch.append(run)
        if len(batch) >= 2000:
            Run.objects.bulk_update(batch, ["failure_key"])
            batch = []
    if batch:
        Run.objects.bulk_update(batch, ["failure_key"])


class Migration(migrations.Migration):
    dependencies = [
        ("launcher", "0004_batch_action_requests"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="failure_key",
            field=models.CharField(blank=True, default="", editable=False, max_length=255),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["batch", "batch_row"], name="run_batch_row"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["batch", "failure_key"], name="run_batch_failure"),
        ),
        migrations.RunPython(fill_failure_keys, migrations.RunPython.noop),
    ]
