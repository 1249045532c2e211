"""Prompt pages: every workflow's versions, labels, diffs and how each version's runs went;
moving labels on evidence ("Promote to production"), importing the stored prompt, canaries.

Anyone who may launch runs (they choose versions) or view prompt versions may read these pages.
Moving a label needs `change_promptlabel`; a protected one (production) also
`move_production_label`, and the evidence gate of `prompt_label_move` (one service for the
page, the admin and the command). Importing needs `add_promptversion`.
"""

from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from launcher.cyberdesk import errors
from launcher.models import Canary, PromptLabel, PromptLabelMove, PromptVersion, Workflow
from launcher.parsing import id_parse, int_parse
from launcher.permissions import LAUNCH_RUN
from launcher.prompt_forms import (
    CanaryStartForm,
    LabelMoveForm,
    evidence_choices,
    evidence_parse,
)
from launcher.selectors import prompt_diff, prompt_workflows
from launcher.services.canary import (
    CanaryInvalid,
    canary_arms,
    canary_start,
    canary_stop,
)
from launcher.services.promotion import promotion_batches, promotion_evidence
from launcher.services.prompts import (
    MOVE_PRODUCTION_LABEL,
    PROMOTE_WITHOUT_EVIDENCE,
    PromotionRefused,
    PromptError,
    PromptLabelInvalid,
    prompt_import_stored,
    prompt_label_move,
    prompt_label_name_clean,
    prompt_variable_warnings,
)
from launcher.services.workflows import workflows_sync_if_stale
from launcher.version_stats import prompt_version_stats

VIEW_PROMPT_VERSIONS = "launcher.view_promptversion"
CHANGE_LABEL = "launcher.change_promptlabel"
ADD_VERSION = "launcher.add_promptversion"
PAGE = "launcher/prompt_workflow.html"
CANARIES_SHOWN = 5


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


def _page_context(request, workflow: Workflow, *, canary_form=None) -> dict:
    labels = list(
        PromptLabel.objects.filter(workflow=workflow).select_related("version").order_by("name")
    )
    stats = prompt_version_stats(workflow, labels=labels)
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
    canaries = list(
        Canary.objects.filter(label__workflow=workflow)
        .select_related("label", "candidate_version", "control_version", "ended_by", "started_by")
        .order_by("-started_at", "-pk")[:CANARIES_SHOWN]
    )
    running_labels = {c.label_id for c in canaries if c.state == Canary.State.RUNNING}
    user = request.user
    return {
        "nav": "prompts",
        "workflow": workflow,
        "stats": stats,
        "stored": next((row for row in stats if row.is_stored), None),
        "a": a,
        "b": b,
        "diff": diff,
        "left_title": f"v{a}",
        "right_title": f"v{b}",
        "diff_is_empty": diff is not None and all(row.kind == "equal" for row in diff),
        "labels": labels,
        "other_labels": [label for label in labels if label.name != PromptLabel.PRODUCTION],
        "canaries": canary_arms(canaries),
        "canary_labels": [
            label for label in labels if label.protected and label.pk not in running_labels
        ],
        "canary_form": canary_form,
        "may_promote": user.has_perm(MOVE_PRODUCTION_LABEL),
        "may_move": user.has_perm(CHANGE_LABEL),
        "may_import": user.has_perm(ADD_VERSION),
    }


@require_GET
@prompt_reader_required
def prompt_workflow(request, workflow_id):
    workflow = get_object_or_404(Workflow, pk=workflow_id)
    if request.htmx:
        versions = {
            version.number: version for version in PromptVersion.objects.filter(workflow=workflow)
        }
        newest = sorted(versions, reverse=True)
        a = _version_number(request.GET.get("a"))
        b = _version_number(request.GET.get("b"))
        if a not in versions:
            a = newest[1] if len(newest) > 1 else None
        if b not in versions:
            b = newest[0] if newest else None
        diff = prompt_diff(versions[a].text, versions[b].text) if a and b else None
        context = {
            "workflow": workflow,
            "a": a,
            "b": b,
            "diff": diff,
            "left_title": f"v{a}",
            "right_title": f"v{b}",
            "diff_is_empty": diff is not None and all(row.kind == "equal" for row in diff),
        }
        return render(request, f"{PAGE}#prompt-diff", context)
    return _render_page(request, workflow)


def _render_page(request, workflow, *, canary_form=None, status=200):
    context = _page_context(request, workflow, canary_form=canary_form)
    context["stored_warnings"] = prompt_variable_warnings(workflow, workflow.main_prompt)
    context["moves"] = (
        PromptLabelMove.objects.filter(label__workflow=workflow)
        .select_related(
            "label", "from_version", "to_version", "moved_by", "evidence_batch", "evidence_canary"
        )
        .order_by("-moved_at", "-pk")[:20]
    )
    return render(request, PAGE, context, status=status)


def _page_url(workflow, anchor=""):
    return reverse("prompt_workflow", args=[workflow.pk]) + (f"#{anchor}" if anchor else "")


# --- Moving a label on evidence -----------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@prompt_reader_required
def prompt_label_move_view(request, workflow_id):
    """GET: the evidence a move would rest on, and the form. POST: the move (or the form again,
    200, with what is missing next to the evidence)."""
    if not request.user.has_perm(CHANGE_LABEL) and not request.user.has_perm(MOVE_PRODUCTION_LABEL):
        raise PermissionDenied("Moving labels needs the change prompt label permission.")
    workflow = get_object_or_404(Workflow, pk=workflow_id)
    data = request.POST if request.method == "POST" else request.GET
    try:
        name = prompt_label_name_clean(data.get("label") or PromptLabel.PRODUCTION)
    except PromptLabelInvalid:
        raise Http404("No such label.") from None
    version_pk = id_parse(data.get("version"))
    if version_pk is None:
        raise Http404("No such version.")
    version = get_object_or_404(PromptVersion, pk=version_pk, workflow=workflow)
    label = (
        PromptLabel.objects.select_related("version").filter(workflow=workflow, name=name).first()
    )
    protected = label.protected if label else name == PromptLabel.PRODUCTION
    if protected and not request.user.has_perm(MOVE_PRODUCTION_LABEL):
        raise PermissionDenied(f"Moving the {name} label needs its own permission.")
    batches = promotion_batches(workflow=workflow, version=version) if protected else []
    canaries = (
        list(
            Canary.objects.filter(label=label, candidate_version=version).select_related(
                "candidate_version"
            )[:5]
        )
        if protected and label
        else []
    )
    may_override = protected and request.user.has_perm(PROMOTE_WITHOUT_EVIDENCE)
    options = evidence_choices(batches=batches, canaries=canaries)
    form = LabelMoveForm(
        data if request.method == "POST" else None,
        initial={"label": name, "version": version.pk},
        evidence_options=options,
        may_override=may_override,
    )
    batch, canary = evidence_parse(data.get("evidence", ""), batches=batches, canaries=canaries)
    chosen = f"batch:{batch.pk}" if batch else f"canary:{canary.pk}" if canary else ""
    evidence = None
    if protected:
        evidence = promotion_evidence(
            workflow=workflow,
            label=name,
            candidate=version,
            current=label.version if label else None,
            batch=batch,
            canary=canary,
        )
    if request.method == "POST" and form.is_valid():
        try:
            prompt_label_move(
                workflow=workflow,
                name=name,
                version=version,
                user=request.user,
                reason=form.cleaned_data["reason"],
                evidence_batch=batch,
                evidence_canary=canary,
                without_evidence=form.cleaned_data.get("without_evidence", False),
            )
        except PromotionRefused as exc:
            field = "reason" if form.cleaned_data.get("without_evidence") else "evidence"
            form.add_error(field, str(exc))
        except PromptError as exc:
            form.add_error(None, str(exc))
        else:
            before = f"v{label.version.number}" if label else "—"
            messages.success(request, f"{name}: {before} → v{version.number}.")
            return redirect(_page_url(workflow, "label-history"))
    return render(
        request,
        "launcher/prompt_promote.html",
        {
            "nav": "prompts",
            "workflow": workflow,
            "version": version,
            "name": name,
            "label": label,
            "protected": protected,
            "evidence": evidence,
            "form": form,
            "may_override": may_override,
            "evidence_options": options,
            "chosen": chosen,
        },
    )


# --- The stored prompt --------------------------------------------------------------------------


@require_POST
@prompt_reader_required
def prompt_import_view(request, workflow_id):
    if not request.user.has_perm(ADD_VERSION):
        raise PermissionDenied("Importing needs the add prompt version permission.")
    workflow = get_object_or_404(Workflow, pk=workflow_id)
    try:
        version, created = prompt_import_stored(workflow=workflow, user=request.user)
    except errors.CyberdeskError as exc:
        messages.error(request, f"The stored prompt could not be fetched: {exc}")
    else:
        if created:
            messages.success(request, f"The stored prompt is saved as v{version.number}.")
        else:
            messages.info(request, f"The stored prompt is already v{version.number}.")
    return redirect(_page_url(workflow))


# --- Canaries -----------------------------------------------------------------------------------


@require_POST
@prompt_reader_required
def canary_start_view(request, workflow_id):
    if not request.user.has_perm(MOVE_PRODUCTION_LABEL):
        raise PermissionDenied("Running a canary needs the permission to move the label.")
    workflow = get_object_or_404(Workflow, pk=workflow_id)
    versions = list(PromptVersion.objects.filter(workflow=workflow).order_by("-number"))
    form = CanaryStartForm(request.POST, versions=versions)
    if form.is_valid():
        label = PromptLabel.objects.filter(
            workflow=workflow, name=form.cleaned_data["label"]
        ).first()
        candidate = next(v for v in versions if v.pk == form.cleaned_data["candidate"])
        if label is None:
            form.add_error(None, "That label does not exist.")
        else:
            try:
                canary = canary_start(
                    label=label,
                    candidate=candidate,
                    share_percent=form.cleaned_data["share_percent"],
                    user=request.user,
                )
            except CanaryInvalid as exc:
                form.add_error("candidate", str(exc))
            else:
                messages.success(
                    request,
                    f"{canary} started: {canary.share_percent}% of {label.name} launches "
                    f"take v{candidate.number}.",
                )
                return redirect(_page_url(workflow, "canary"))
    return _render_page(request, workflow, canary_form=form)


@require_POST
@prompt_reader_required
def canary_stop_view(request, workflow_id, canary_id):
    if not request.user.has_perm(MOVE_PRODUCTION_LABEL):
        raise PermissionDenied("Stopping a canary needs the permission to move the label.")
    canary = get_object_or_404(
        Canary.objects.select_related("label"), pk=canary_id, label__workflow_id=workflow_id
    )
    try:
        canary_stop(canary=canary, user=request.user)
    except CanaryInvalid as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"{canary} stopped: every {canary.label.name} launch takes "
            f"v{canary.control_version.number} again.",
        )
    return redirect(_page_url(canary.label.workflow, "canary"))
