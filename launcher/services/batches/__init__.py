"""Batches: many runs of one workflow launched together — rows × models × prompt choices.

The package reads in the order of the flow; each step is safe to repeat:

1. **Check** (`rows.py`: `batch_rows_check`, `batch_inputs_check`): the rows come from a pasted
   or uploaded CSV (header = input keys) or JSON Lines file, or are N copies of one set of
   inputs. Every row is coerced and validated exactly as the launch form does it
   (`launcher.inputs`) and against the variables of the chosen prompts. Nothing is stored.
2. **Plan** (`plan.py`: `batch_create`): one transaction stores the batch and *every* run —
   model, prompt resolved to a concrete version, inputs, and its idempotency key — as `queued`.
   The plan is durable before anything is sent; the sending task is enqueued when it commits.
3. **Send** (`send.py`: `batch_submit`, run by `launcher.tasks.batch_submit_task`): the queued
   runs go out with bounded concurrency (`workers.py`), each with its own stored key. The worker
   can die at any moment: sending a run again with the same key makes the API replay its first
   answer, so a restarted batch ends with exactly the planned runs, never a duplicate.
4. **Act** (`actions.py`: "Cancel the rest", "Retry failed runs"): the request does the local
   part, the worker the API calls.
5. **Learn** (`clusters.py`: `batch_failure_clusters`, `batch_cluster_retry`): the failed runs
   grouped by cause (the failing post-run check, or the error with ids and numbers stripped),
   and "Retry this cluster" — step 4's retry limited to one cause.

Secrets and files are never stored, so a batch cannot carry them: rows may not name a sensitive
(`$name`) or file input, and a workflow that *requires* one is launched one run at a time.

Other modules import from here, never from the step modules.
"""

from launcher.services.batches.actions import (
    CANCELLED_BEFORE_SENDING,
    FAILED_STATUSES,
    BatchActionReport,
    BatchActionRequested,
    batch_cancel_rest,
    batch_cancel_upstream,
    batch_retry_failed,
    batch_retry_upstream,
)
from launcher.services.batches.clusters import (
    CLUSTERS_SHOWN,
    BatchClusters,
    ClusterCell,
    FailureCluster,
    batch_cluster_retry,
    batch_failure_cluster,
    batch_failure_clusters,
)
from launcher.services.batches.plan import BatchRefused, batch_create, batch_size
from launcher.services.batches.rows import (
    CSV,
    JSONL,
    NEEDS_FILES,
    NEEDS_SECRETS,
    BadRow,
    BatchRow,
    RowCheck,
    batch_blocker,
    batch_inputs_check,
    batch_inputs_strip_secrets,
    batch_prompt_problems,
    batch_rows_check,
    batch_rows_strip_secrets,
    input_format_detect,
    max_runs,
)
from launcher.services.batches.send import CLAIM_TTL, SubmitReport, batch_submit
from launcher.services.batches.workers import SLICE_SECONDS

__all__ = [
    "CLUSTERS_SHOWN",
    "BatchClusters",
    "ClusterCell",
    "FailureCluster",
    "batch_cluster_retry",
    "batch_failure_cluster",
    "batch_failure_clusters",
    "CANCELLED_BEFORE_SENDING",
    "CLAIM_TTL",
    "CSV",
    "FAILED_STATUSES",
    "JSONL",
    "NEEDS_FILES",
    "NEEDS_SECRETS",
    "SLICE_SECONDS",
    "BadRow",
    "BatchActionReport",
    "BatchActionRequested",
    "BatchRefused",
    "BatchRow",
    "RowCheck",
    "SubmitReport",
    "batch_blocker",
    "batch_cancel_rest",
    "batch_cancel_upstream",
    "batch_create",
    "batch_inputs_check",
    "batch_inputs_strip_secrets",
    "batch_prompt_problems",
    "batch_retry_failed",
    "batch_retry_upstream",
    "batch_rows_check",
    "batch_rows_strip_secrets",
    "batch_size",
    "batch_submit",
    "input_format_detect",
    "max_runs",
]
