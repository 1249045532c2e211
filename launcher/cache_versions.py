"""Version numbers of cached lists, bumped whenever what a list is made of changes, so a cached
copy is looked up under the current number and a change is a new key: never a stale list until
a timeout.

The number lives in the database (`CacheVersion`), read with one primary-key query, and is
bumped as the change commits (see `cache_version_bump`): the default cache is per process,
and a change made in another process or by the worker must count from the next request
everywhere. A reader
reads the number before the data, so a copy stored under a number is never older than it.

`RUN_FILTER_CHOICES` — what the runs page's filters offer (`selectors.run_filter_choices`):
workflows, models, prompt versions and labels, batches, people, and which of them some run
uses. Bumped on any save or delete of those, and on a new run (`Run.objects.create`; a batch's
runs are bulk-inserted in the transaction that creates their `Batch`, whose save bumps it).
A run's model, prompt and launcher never change after it is created. Deleting a single run
(the admin) does not bump it, so a value only that run used stays offered (and finds nothing)
until the next change: a `post_delete` receiver on `Run` would turn every cascade (a deleted
batch's 10,000 runs) from one DELETE into a read of every row.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from launcher.models import (
    Batch,
    CacheVersion,
    ModelOption,
    PromptLabel,
    PromptVersion,
    Run,
    Workflow,
)

RUN_FILTER_CHOICES = "run-filter-choices"


def cache_version(name: str) -> int:
    """The current number of `name` (0 before its first bump). One query."""
    return CacheVersion.objects.filter(name=name).values_list("number", flat=True).first() or 0


def cache_version_bump(name: str) -> None:
    """A new number for `name` once the change commits: copies cached under the old one are then
    no longer looked up.

    The bump runs after the writer's commit (`on_commit`; at once outside a transaction), in a
    statement of its own. The row is one for every writer: bumped inside a launch's
    transaction, its lock made concurrent launches wait for each other until commit and, with
    the other rows they lock, deadlock (tests/services/test_races.py). After the commit a
    reader sees the new data at once; one that read the number just before the bump caches that
    fresher list under the old number, and the next request after the bump reads anew.

    One statement, whether or not the row exists yet (an upsert). The new number is random
    rather than the old one plus one: an increment would need the row to exist first (a read,
    then an insert). 62 random bits: a repeat of a number still cached is not a practical
    concern."""
    transaction.on_commit(lambda: _bump(name))


def _bump(name: str) -> None:
    CacheVersion.objects.bulk_create(
        [CacheVersion(name=name, number=secrets.randbits(62))],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["number"],
    )


# What the filters show of each model: a save that names its fields (`update_fields`) and
# touches none of these (a model's price, a login's `last_login`) changes no choice.
_SHOWN_FIELDS = {
    "Workflow": {"name"},
    "ModelOption": {"name"},
    "PromptVersion": {"number", "workflow"},
    "PromptLabel": {"name", "workflow"},
    "Batch": {"name", "created_at"},
    "User": {"username"},
}


def _choices_changed(sender, update_fields=None, **kwargs) -> None:
    shown = _SHOWN_FIELDS.get(sender.__name__)
    if update_fields is not None and shown is not None and not shown & set(update_fields):
        return
    cache_version_bump(RUN_FILTER_CHOICES)


def _run_saved(sender, instance, created, **kwargs) -> None:
    if created:  # its model, prompt, label and launcher may be ones no run used before
        cache_version_bump(RUN_FILTER_CHOICES)


def connect() -> None:
    """Connect the bumps (from `LauncherConfig.ready`)."""
    for model in (Workflow, ModelOption, PromptVersion, PromptLabel, Batch, get_user_model()):
        post_save.connect(_choices_changed, sender=model, dispatch_uid=f"choices-{model.__name__}")
        post_delete.connect(
            _choices_changed, sender=model, dispatch_uid=f"choices-del-{model.__name__}"
        )
    post_save.connect(_run_saved, sender=Run, dispatch_uid="choices-run")
