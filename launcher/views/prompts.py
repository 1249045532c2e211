"""Prompt pages: every workflow's versions, labels, diffs and how each version's runs went.

Read-only here; prompt editors write versions and move labels in the Django admin. Anyone who
may launch runs (they choose versions) or view prompt versions may read these pages.
"""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from launcher.models import PromptLabelMove, Workflow
from launcher.parsing import int_parse
from launcher.permissions import LAUNCH_RUN
from launcher.selectors import prompt_diff, prompt_version_stats, prompt_workflows
from launcher.services.prompts import prompt_variable_warnings
from launcher.services.workflows import workflows_sync_if_stale

VIEW_PROMPT_VERSIONS = "launcher.view_promptversion"
PAGE = "launcher/prompt_workflow.html"


def prompt_reader_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not (user.has_perm(LAUNCH_RUN) or user.has_perm(VIEW_PROMPT_VERSIONS)):
            raise PermissionDenied("You need the launch or the prompt view permission.")
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@prompt_reader_required
def prompt_index(request):
    workflows_sync_if_stale()
    return render(
        request, "launcher/prompt_index.html", {"nav": "prompts", "workflows": prompt_workflows()}
    )


def _version_number(value: str | None) -> int | None:
    return int_parse(value, min_value=1)


@require_GET
@prompt_reader_required
def prompt_workflow(request, workflow_id):
    workflow = get_object_or_404(Workflow, pk=workflow_id)
    stats = prompt_version_stats(workflow)
    by_number = {row.version.number: row.version for row in stats}
    # Default comparison: the previous version against the newest.
    a = _version_number(request.GET.get("a"))
    b = _version_number(request.GET.get("b"))
    if a not in by_number:
        a = stats[1].version.number if len(stats) > 1 else None
    if b not in by_number:
        b = stats[0].version.number if stats else None
    diff = None
    if a is not None and b is not None:
        diff = prompt_diff(by_number[a].text, by_number[b].text)
    context = {
        "nav": "prompts",
        "workflow": workflow,
        "stats": stats,
        "a": a,
        "b": b,
        "diff": diff,
        "left_title": f"v{a}",
        "right_title": f"v{b}",
        "diff_is_empty": diff is not None and all(row.kind == "equal" for row in diff),
    }
    if request.htmx:
        return render(request, f"{PAGE}#prompt-diff", context)
    context["stored_warnings"] = prompt_variable_warnings(workflow, workflow.main_prompt)
    context["moves"] = (
        PromptLabelMove.objects.filter(label__workflow=workflow)
        .select_related("label", "from_version", "to_version", "moved_by")
        .order_by("-moved_at", "-pk")[:20]
    )
    return render(request, PAGE, context)
