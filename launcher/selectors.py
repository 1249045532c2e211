"""The read side: queries that pages and services share. No writes, no API calls.

Grouped by subject; each group says who uses it.
"""

from __future__ import annotations

import difflib
import statistics
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Prefetch, QuerySet

from launcher.models import (
    ModelOption,
    PromptLabel,
    PromptMode,
    PromptVersion,
    Run,
    RunStatus,
    Workflow,
)
from launcher.services.prompts import prompt_variable_warnings

# --- Model catalog (models page, launch page) ---------------------------------------------------

CYBERDESK_DEFAULT = "Cyberdesk default"


def models_offered() -> QuerySet[ModelOption]:
    """Models operators may pick as the main agent: computer-use, not archived upstream, still
    listed upstream, and enabled by staff. (Call `models_sync_if_stale()` first for freshness.)"""
    return ModelOption.objects.filter(
        is_computer_use=True, is_archived_upstream=False, present_upstream=True, enabled=True
    ).order_by("name")


def model_default_name(workflow: Workflow | None) -> str:
    """The name of the model a run uses without an override, for "Workflow default (<name>)":
    the workflow's main agent model, else the system default computer-use model, else
    "Cyberdesk default"."""
    metadata = (workflow.model_metadata if workflow else None) or {}
    main_agent_id = metadata.get("main_agent_model_id") if isinstance(metadata, dict) else None
    if main_agent_id:
        name = ModelOption.objects.filter(pk=main_agent_id).values_list("name", flat=True).first()
        if name:
            return name
    system_default = (
        ModelOption.objects.filter(is_system_default=True, present_upstream=True)
        .order_by("-is_computer_use", "name")
        .values_list("name", flat=True)
        .first()
    )
    return system_default or CYBERDESK_DEFAULT


def model_catalog() -> QuerySet[ModelOption]:
    """Every model configuration, with how many runs used it (`runs_used`), for staff."""
    return ModelOption.objects.annotate(runs_used=Count("runs")).order_by(
        "-present_upstream", "-is_computer_use", "name"
    )


# --- Prompt choices (launch page, batches) ------------------------------------------------------

WARNING_MARK = "⚠"


def prompt_choices(workflow: Workflow) -> list[tuple[str, str]]:
    """The prompt choices for a workflow as (value, display) pairs, in picker order:

    the stored prompt, latest, each label, then every version newest first. A choice whose
    text has variable problems (see `prompt_variable_warnings`) ends with " ⚠". Two queries.
    """
    versions = list(PromptVersion.objects.filter(workflow=workflow).order_by("-number"))
    labels = list(PromptLabel.objects.filter(workflow=workflow).order_by("name"))
    by_id = {version.pk: version for version in versions}

    def mark(text: str) -> str:
        return f" {WARNING_MARK}" if prompt_variable_warnings(workflow, text) else ""

    choices = [("stored", str(PromptMode.STORED.label) + mark(workflow.main_prompt))]
    if versions:
        newest = versions[0]
        flag = mark(newest.text)
        choices.append(("latest", f"Latest (v{newest.number}){flag}"))
    for label in labels:
        version = by_id.get(label.version_id)
        if version is not None:
            choices.append(
                (f"label:{label.name}", f"{label.name} (v{version.number}){mark(version.text)}")
            )
    for version in versions:
        note = f" — {version.note}" if version.note else ""
        choices.append((f"version:{version.pk}", f"v{version.number}{note}{mark(version.text)}"))
    return choices


def prompt_choice_default(workflow: Workflow) -> str:
    """The production label when the workflow has one, else its stored prompt."""
    has_production = PromptLabel.objects.filter(
        workflow=workflow, name=PromptLabel.PRODUCTION
    ).exists()
    return f"label:{PromptLabel.PRODUCTION}" if has_production else "stored"


# --- Prompt pages (prompts index and per-workflow page) -----------------------------------------


def prompt_workflows() -> QuerySet[Workflow]:
    """Workflows with `version_count` and their labels (with versions) prefetched."""
    return Workflow.objects.annotate(version_count=Count("prompt_versions")).prefetch_related(
        Prefetch(
            "prompt_labels",
            queryset=PromptLabel.objects.select_related("version").order_by("name"),
        )
    )


@dataclass(frozen=True)
class VersionStats:
    version: PromptVersion
    labels: list[str]
    is_latest: bool
    runs: int
    finished: int
    succeeded: int
    median_duration: timedelta | None
    warnings: list[str]

    @property
    def success_rate(self) -> float | None:
        """Successes among runs that reached an outcome (cancelled and rejected runs excluded)."""
        return self.succeeded / self.finished if self.finished else None

    @property
    def success_percent(self) -> int | None:
        rate = self.success_rate
        return None if rate is None else round(rate * 100)

    @property
    def median_duration_display(self) -> str:
        if self.median_duration is None:
            return ""
        seconds = round(self.median_duration.total_seconds())
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        if hours:
            return f"{hours}h {minutes:02d}m"
        return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


_OUTCOMES = (RunStatus.SUCCESS, RunStatus.TASK_FAILED, RunStatus.ERROR)


def prompt_version_stats(workflow: Workflow) -> list[VersionStats]:
    """Every version of a workflow, newest first, with its labels, run count, success rate and
    median duration. Three queries whatever the number of versions or runs; the median is taken
    in Python so it works the same on SQLite and PostgreSQL."""
    versions = list(
        PromptVersion.objects.filter(workflow=workflow).select_related("author").order_by("-number")
    )
    labels: dict[int, list[str]] = {}
    for name, version_id in PromptLabel.objects.filter(workflow=workflow).values_list(
        "name", "version_id"
    ):
        labels.setdefault(version_id, []).append(name)
    runs: dict[int, list] = {}
    for version_id, status, started_at, ended_at in Run.objects.filter(
        workflow=workflow, prompt_version__isnull=False
    ).values_list("prompt_version_id", "status", "started_at", "ended_at"):
        runs.setdefault(version_id, []).append((status, started_at, ended_at))
    stats = []
    for index, version in enumerate(versions):
        rows = runs.get(version.pk, [])
        durations = [ended - started for _, started, ended in rows if started and ended]
        stats.append(
            VersionStats(
                version=version,
                labels=sorted(labels.get(version.pk, [])),
                is_latest=index == 0,
                runs=len(rows),
                finished=sum(1 for status, _, _ in rows if status in _OUTCOMES),
                succeeded=sum(1 for status, _, _ in rows if status == RunStatus.SUCCESS),
                median_duration=statistics.median(durations) if durations else None,
                warnings=prompt_variable_warnings(workflow, version.text),
            )
        )
    return stats


@dataclass(frozen=True)
class DiffRow:
    """One line of a side-by-side diff. `kind`: equal, delete, insert or replace."""

    kind: str
    left_number: int | None
    left: str | None
    right_number: int | None
    right: str | None


def prompt_diff(old: str, new: str) -> list[DiffRow]:
    """A side-by-side, line-by-line diff of two prompt texts (rendered escaped by templates)."""
    old_lines = (old or "").splitlines()
    new_lines = (new or "").splitlines()
    rows = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for offset in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + offset, j1 + offset
            left = old_lines[i] if i < i2 else None
            right = new_lines[j] if j < j2 else None
            kind = tag
            if tag == "replace":
                kind = (
                    "replace"
                    if left is not None and right is not None
                    else ("delete" if right is None else "insert")
                )
            rows.append(
                DiffRow(
                    kind=kind,
                    left_number=i + 1 if left is not None else None,
                    left=left,
                    right_number=j + 1 if right is not None else None,
                    right=right,
                )
            )
    return rows
