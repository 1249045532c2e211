"""Failure clusters read the batch's failed runs through one index: (batch, status,
failure_key, cyberdesk_id) serves the totals and the largest clusters index-only and finds the
failed runs still without a key by a seek. It replaces (batch, failure_key), which made the
"runs without a key" check read every non-failed run of the batch (their key is "" too)."""

from django.conf import settings
from django.db import migrations, models


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
    ]
