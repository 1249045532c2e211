"""The Django admin, treated as the prompt editors' and staff's product.

- Workflows are a read-only mirror of the API; an action imports a workflow's stored prompt as
  a new version.
- Prompt versions never change once saved: the change page is read-only and offers "Edit (save
  as new version)", which shows a diff against the version it started from before saving.
  "Publish to workflow" patches the upstream workflow after a confirmation page.
- Labels are moved through `prompt_label_move`, which records every move; `production` needs
  its own permission.
- Model options: staff enable/disable (recorded) and set prices; upstream fields are read-only.

Permissions are Django model permissions: prompt editors get add/view prompt version,
add/change/view prompt label and view workflow; publishing needs change workflow.
"""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ERROR_FLAG
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from launcher.cyberdesk import errors
from launcher.models import (
    Batch,
    Canary,
    ModelOption,
    ModelOptionChange,
    PromptLabel,
    PromptLabelMove,
    PromptVersion,
    Workflow,
    sha256_text,
)
from launcher.selectors import prompt_diff
from launcher.services.canary import canary_stop
from launcher.services.catalog import model_set_enabled
from launcher.services.prompts import (
    MOVE_PRODUCTION_LABEL,
    PUBLISH_PROMPT,
    PromptError,
    prompt_import_stored,
    prompt_label_move,
    prompt_label_move_check,
    prompt_label_name_clean,
    prompt_label_set_protected,
    prompt_latest_version,
    prompt_publish,
    prompt_variable_warnings,
    prompt_version_confirm,
    prompt_version_create,
)
from launcher.services.workflows import workflows_sync, workflows_sync_if_stale

admin.site.site_header = "Launcher administration"
admin.site.site_title = "Launcher admin"


class LauncherAdmin(admin.ModelAdmin):
    """Every Launcher ModelAdmin. A list filter or search holding U+0000 (`?name=%00`) would
    reach PostgreSQL, which refuses it in a query (a 500): the list answers it as Django's
    admin answers any filter it cannot apply, with the list again and `?e=1`."""

    def changelist_view(self, request, extra_context=None):
        if any("\x00" in key or "\x00" in value for key, value in request.GET.items()):
            return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
        return super().changelist_view(request, extra_context)


class ReadOnlyAdmin(LauncherAdmin):
    """Rows that are written by services only: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    """A history shown under its row: never added or changed here (services write it)."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- Workflows ----------------------------------------------------------------------------------


@admin.register(Workflow)
class WorkflowAdmin(ReadOnlyAdmin):
    list_display = ["name", "id", "version_count", "labels", "last_run_errored", "synced_at"]
    search_fields = ["name", "id"]
    readonly_fields = [
        "id",
        "name",
        "main_prompt",
        "input_schema",
        "model_metadata",
        "tags",
        "last_run_errored",
        "has_post_run_checks",
        "upstream_updated_at",
        "synced_at",
        "prompt_versions_link",
    ]
    actions = ["import_stored_prompt"]
    change_list_template = "admin/launcher/workflow/change_list.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(version_count=Count("prompt_versions"))
            .prefetch_related("prompt_labels__version")
        )

    @admin.display(description="Versions", ordering="version_count")
    def version_count(self, workflow):
        return workflow.version_count

    @admin.display(description="Labels")
    def labels(self, workflow):
        return ", ".join(
            f"{label.name} → v{label.version.number}" for label in workflow.prompt_labels.all()
        )

    @admin.display(description="Prompt versions")
    def prompt_versions_link(self, workflow):
        url = reverse("admin:launcher_promptversion_changelist")
        return format_html(
            '<a href="{}?workflow__id__exact={}">See its versions</a>', url, workflow.pk
        )

    def has_import_prompt_permission(self, request):
        return request.user.has_perm("launcher.add_promptversion")

    @admin.action(
        description="Import stored prompt as a new version", permissions=["import_prompt"]
    )
    def import_stored_prompt(self, request, queryset):
        for workflow in queryset:
            try:
                version, created = prompt_import_stored(workflow=workflow, user=request.user)
            except errors.CyberdeskError as exc:
                self.message_user(
                    request, f"{workflow}: nothing imported, the API failed: {exc}", messages.ERROR
                )
                continue
            if created:
                self.message_user(
                    request, f"{workflow}: imported the stored prompt as v{version.number}."
                )
            else:
                self.message_user(
                    request,
                    f"{workflow}: the stored prompt already is v{version.number}; "
                    "nothing imported.",
                    messages.WARNING,
                )

    def get_urls(self):
        return [
            path(
                "sync/",
                self.admin_site.admin_view(self.sync_view),
                name="launcher_workflow_sync",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        workflows_sync_if_stale()
        return super().changelist_view(request, extra_context)

    def sync_view(self, request):
        if request.method != "POST" or not self.has_view_permission(request):
            raise PermissionDenied
        try:
            synced = workflows_sync()
        except errors.CyberdeskError as exc:
            self.message_user(request, f"Could not sync the workflows: {exc}", messages.ERROR)
        else:
            self.message_user(request, f"{len(synced)} workflows synced from the API.")
        return HttpResponseRedirect(reverse("admin:launcher_workflow_changelist"))


# --- Prompt versions ----------------------------------------------------------------------------


class PromptVersionForm(forms.Form):
    """New text for a workflow. The workflow is fixed when editing an existing version."""

    workflow = forms.ModelChoiceField(queryset=Workflow.objects.all(), label="Workflow")
    text = forms.CharField(
        label="Prompt text",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 20, "cols": 100, "class": "vLargeTextField"}),
    )
    note = forms.CharField(
        label="Note",
        max_length=500,
        required=False,
        help_text="What changed and why (shown next to the version everywhere).",
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )
    previewed_sha256 = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, based_on: PromptVersion | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.based_on = based_on
        if based_on is not None:
            self.fields["workflow"].disabled = True
            self.fields["workflow"].initial = based_on.workflow

    def clean_text(self):
        text = self.cleaned_data["text"]
        if not text.strip():
            raise forms.ValidationError("The prompt text cannot be empty.")
        if self.based_on is not None and sha256_text(text) == self.based_on.sha256:
            raise forms.ValidationError(
                f"The text is the same as v{self.based_on.number}: there is nothing to save."
            )
        return text


@admin.register(PromptVersion)
class PromptVersionAdmin(LauncherAdmin):
    list_display = ["__str__", "workflow", "note", "labels", "author", "created_at", "short_hash"]
    list_display_links = ["__str__"]
    list_filter = ["workflow", "imported_from_workflow"]
    search_fields = ["note", "text", "workflow__name"]
    list_select_related = ["workflow", "author"]
    readonly_fields = [
        "workflow",
        "number",
        "note",
        "imported_from_workflow",
        "author",
        "created_at",
        "sha256",
        "based_on_link",
        "labels",
        "variable_warnings",
        "text",
    ]
    fields = readonly_fields
    actions = ["publish_to_workflow"]
    change_form_template = "admin/launcher/promptversion/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("labels")

    # A saved version never changes, and runs point at it: no change, no delete.
    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_publish_permission(self, request):
        return request.user.has_perm(PUBLISH_PROMPT)

    @admin.display(description="Labels")
    def labels(self, version):
        return ", ".join(label.name for label in version.labels.all()) or "—"

    @admin.display(description="Based on")
    def based_on_link(self, version):
        if version.based_on is None:
            return "—"
        url = reverse("admin:launcher_promptversion_change", args=[version.based_on.pk])
        return format_html('<a href="{}">v{}</a>', url, version.based_on.number)

    @admin.display(description="Variable problems")
    def variable_warnings(self, version):
        warnings = prompt_variable_warnings(version.workflow, version.text)
        if not warnings:
            return "None"
        # A class of our own: the admin indents a bare <ul>, out of line with the other values.
        return format_html(
            '<ul class="variable-problems">{}</ul>',
            format_html_join("", "<li>{}</li>", ((w,) for w in warnings)),
        )

    @admin.action(description="Publish to workflow…", permissions=["publish"])
    def publish_to_workflow(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to publish.", messages.WARNING)
            return None
        return HttpResponseRedirect(
            reverse("admin:launcher_promptversion_publish", args=[queryset.get().pk])
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:version_id>/edit/", wrap(self.edit_view), name="launcher_promptversion_edit"
            ),
            path(
                "<int:version_id>/publish/",
                wrap(self.publish_view),
                name="launcher_promptversion_publish",
            ),
            path(
                "<int:version_id>/confirm-variables/",
                wrap(self.confirm_variables_view),
                name="launcher_promptversion_confirm_variables",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        version = self.get_object(request, object_id)
        if version is not None:
            extra_context.update(
                can_edit=self.has_add_permission(request),
                can_publish=self.has_publish_permission(request),
                can_confirm=self.has_add_permission(request) and not version.variables_confirmed,
                diff=prompt_diff(version.based_on.text, version.text) if version.based_on else None,
                left_title=f"v{version.based_on.number}" if version.based_on else "",
                right_title=f"v{version.number}",
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def confirm_variables_view(self, request, version_id):
        """POST: an editor confirms a saved version's unknown variables (it may become Latest)."""
        if request.method != "POST":
            return HttpResponseRedirect(
                reverse("admin:launcher_promptversion_change", args=[version_id])
            )
        if not self.has_add_permission(request):
            raise PermissionDenied
        version = get_object_or_404(PromptVersion.objects.select_related("workflow"), pk=version_id)
        prompt_version_confirm(version=version)
        self.message_user(
            request,
            f"Confirmed: v{version.number} may now be offered as Latest.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:launcher_promptversion_change", args=[version.pk])
        )

    def add_view(self, request, form_url="", extra_context=None):
        return self._version_form_view(request, based_on=None)

    def edit_view(self, request, version_id):
        based_on = get_object_or_404(
            PromptVersion.objects.select_related("workflow"), pk=version_id
        )
        return self._version_form_view(request, based_on=based_on)

    def _version_form_view(self, request, *, based_on: PromptVersion | None):
        """New version (from scratch, or "edit" = based on another one).

        Editing always shows the diff against the version it started from before saving: the
        save button only saves the exact text that was previewed (its hash travels along).
        """
        if not self.has_add_permission(request):
            raise PermissionDenied
        preview = None
        if request.method == "POST":
            form = PromptVersionForm(request.POST, based_on=based_on)
            if form.is_valid():
                workflow = form.cleaned_data["workflow"]
                text = form.cleaned_data["text"]
                previewed = form.cleaned_data["previewed_sha256"] == sha256_text(text)
                confirmed = "_save_unknown" in request.POST
                wants_save = "_save" in request.POST or confirmed
                # Unknown variables ({patient_nme}) are saved only when the editor says so,
                # with "Save with unknown variables" after seeing them.
                unknown = bool(prompt_variable_warnings(workflow, text))
                if wants_save and (based_on is None or previewed) and (confirmed or not unknown):
                    return self._save_version(
                        request, form, workflow, based_on, confirmed=confirmed
                    )
                preview = self._preview(workflow, text, based_on)
                form = PromptVersionForm(
                    initial={**form.cleaned_data, "previewed_sha256": sha256_text(text)},
                    based_on=based_on,
                )
                if wants_save and unknown and (based_on is None or previewed):
                    self.message_user(
                        request,
                        "Not saved: this text uses variables the workflow does not define. "
                        "Correct them, or press “Save with unknown variables”.",
                        messages.WARNING,
                    )
                elif wants_save:
                    self.message_user(request, "Review the changes, then save.", messages.WARNING)
        else:
            initial = {}
            if based_on is not None:
                initial["text"] = based_on.text
            elif request.GET.get("workflow"):
                initial["workflow"] = Workflow.objects.filter(
                    pk=_uuid_or_none(request.GET["workflow"])
                ).first()
            form = PromptVersionForm(initial=initial, based_on=based_on)
        title = (
            f"Edit v{based_on.number} of {based_on.workflow} (saves a new version)"
            if based_on
            else "Add prompt version"
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "form": form,
            "based_on": based_on,
            "preview": preview,
        }
        return TemplateResponse(request, "admin/launcher/promptversion/version_form.html", context)

    def _preview(self, workflow, text, based_on):
        base = based_on or prompt_latest_version(workflow)
        return {
            "base": base,
            "diff": prompt_diff(base.text if base else "", text),
            "left_title": f"v{base.number}" if base else "(nothing yet)",
            "right_title": "New version",
            "warnings": prompt_variable_warnings(workflow, text),
            "unchanged": base is not None and base.sha256 == sha256_text(text),
        }

    def _save_version(self, request, form, workflow, based_on, *, confirmed=False):
        try:
            version = prompt_version_create(
                workflow=workflow,
                text=form.cleaned_data["text"],
                note=form.cleaned_data["note"],
                author=request.user,
                based_on=based_on,
                confirm_unknown_variables=confirmed,
            )
        except PromptError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        self.log_addition(request, version, [{"added": {}}])
        self.message_user(request, f"Saved v{version.number} of {workflow}.", messages.SUCCESS)
        for warning in prompt_variable_warnings(workflow, version.text):
            self.message_user(request, warning, messages.WARNING)
        return HttpResponseRedirect(
            reverse("admin:launcher_promptversion_change", args=[version.pk])
        )

    def publish_view(self, request, version_id):
        if not self.has_publish_permission(request):
            raise PermissionDenied
        version = get_object_or_404(PromptVersion.objects.select_related("workflow"), pk=version_id)
        if request.method == "POST":
            try:
                prompt_publish(version=version, user=request.user)
            except errors.CyberdeskError as exc:
                self.message_user(
                    request, f"Nothing was published: the API failed: {exc}", messages.ERROR
                )
            else:
                self.message_user(
                    request,
                    # The admin capitalises a message's first letter: "v4" must not lead.
                    f"Published: v{version.number} is now the stored prompt of {version.workflow}.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(
                reverse("admin:launcher_promptversion_change", args=[version.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Publish v{version.number} to {version.workflow}?",
            "version": version,
            "diff": prompt_diff(version.workflow.main_prompt, version.text),
            "left_title": "Stored prompt now",
            "right_title": f"v{version.number}",
            "unchanged": sha256_text(version.workflow.main_prompt) == version.sha256,
            "warnings": prompt_variable_warnings(version.workflow, version.text),
        }
        return TemplateResponse(
            request, "admin/launcher/promptversion/publish_confirm.html", context
        )


def _uuid_or_none(value: str):
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# --- Prompt labels ------------------------------------------------------------------------------


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, version):
        note = f" — {version.note}" if version.note else ""
        return f"{version.workflow} · v{version.number}{note}"


class PromptLabelForm(forms.ModelForm):
    version = VersionChoiceField(
        queryset=PromptVersion.objects.select_related("workflow").order_by("workflow", "-number")
    )
    evidence_batch = forms.ModelChoiceField(
        queryset=Batch.objects.select_related("workflow").order_by("-created_at"),
        required=False,
        label="Evidence batch",
        help_text=(
            "For a protected label: the finished batch whose runs show the version is good "
            "enough. Empty: the newest batch that qualifies."
        ),
    )
    without_evidence = forms.BooleanField(
        required=False,
        label="Promote without evidence",
        help_text="Needs the “may promote without evidence” permission and a reason.",
    )
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        required=False,
        help_text="Why the label points here now (kept in the label's history).",
        widget=forms.TextInput(attrs={"class": "vTextField"}),
    )

    class Meta:
        model = PromptLabel
        fields = ["workflow", "name", "version", "protected"]
        help_texts = {
            "name": "production, staging, or any name. 'latest' is always the newest version."
        }

    user = None  # set by the admin: protected labels need permissions

    def clean_name(self):
        try:
            return prompt_label_name_clean(self.cleaned_data["name"])
        except PromptError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self):
        cleaned = super().clean()
        workflow = cleaned.get("workflow") or (self.instance.workflow if self.instance.pk else None)
        name = cleaned.get("name") or self.instance.name
        version = cleaned.get("version")
        if workflow and version and version.workflow_id != workflow.pk:
            self.add_error("version", f"Pick a version of {workflow}.")
            return cleaned
        if not (workflow and name and version):
            return cleaned
        # The same checks the move makes (permission, evidence), shown on the form: the admin
        # moves labels through the one service, so its rule is the app's rule.
        label = PromptLabel.objects.filter(workflow=workflow, name=name).first()
        if label is not None and label.version_id == version.pk:
            return cleaned
        try:
            prompt_label_move_check(
                workflow=workflow,
                label=label,
                name=name,
                version=version,
                user=self.user,
                reason=cleaned.get("reason", ""),
                evidence_batch=cleaned.get("evidence_batch"),
                without_evidence=cleaned.get("without_evidence", False),
            )
        except PermissionDenied:
            raise forms.ValidationError(
                f"Moving the {name} label needs the “Can move the production label” permission."
            ) from None
        except PromptError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return cleaned

    def _get_validation_exclusions(self):
        exclude = super()._get_validation_exclusions()
        if not self.instance.pk:
            # A new label with an existing name is a move (recorded by save_model), not an
            # error: skip the (workflow, name) constraint; clean_name already refused `latest`.
            exclude.add("name")
        return exclude

    def validate_unique(self):
        if self.instance.pk:
            super().validate_unique()


class PromptLabelMoveInline(ReadOnlyInline):
    model = PromptLabelMove
    fields = [
        "moved_at",
        "from_version",
        "to_version",
        "moved_by",
        "reason",
        "evidence_batch",
        "without_evidence",
    ]
    readonly_fields = fields
    verbose_name = "move"
    verbose_name_plural = "History"


@admin.register(PromptLabel)
class PromptLabelAdmin(LauncherAdmin):
    form = PromptLabelForm
    list_display = ["name", "workflow", "version", "protected", "updated_at"]
    list_filter = ["workflow", "name", "protected"]
    list_select_related = ["workflow", "version"]
    inlines = [PromptLabelMoveInline]

    def get_readonly_fields(self, request, obj=None):
        # Existing labels only move; renaming would rewrite their history's meaning.
        return ["workflow", "name"] if obj else []

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user
        return form

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        workflow = obj.workflow
        label = prompt_label_move(
            workflow=workflow,
            name=obj.name,
            version=form.cleaned_data["version"],
            user=request.user,
            reason=form.cleaned_data.get("reason", ""),
            evidence_batch=form.cleaned_data.get("evidence_batch"),
            without_evidence=form.cleaned_data.get("without_evidence", False),
        )
        if "protected" in form.changed_data and label.protected != obj.protected:
            try:
                prompt_label_set_protected(label=label, protected=obj.protected, user=request.user)
            except PermissionDenied as exc:
                self.message_user(request, str(exc), messages.ERROR)
        # The service wrote the row; let the admin carry on with it (log entry, redirect).
        obj.pk = label.pk
        obj._state.adding = False


@admin.register(PromptLabelMove)
class PromptLabelMoveAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "moved_at",
        "label_name",
        "from_version",
        "to_version",
        "moved_by",
        "reason",
        "evidence_batch",
        "without_evidence",
    ]
    list_filter = ["label__workflow", "label__name", "without_evidence"]
    list_select_related = ["label", "from_version", "to_version", "moved_by", "evidence_batch"]

    @admin.display(description="Label", ordering="label__name")
    def label_name(self, move):
        # The label's name only: its current target would contradict this row's "to".
        return move.label.name


@admin.register(Canary)
class CanaryAdmin(ReadOnlyAdmin):
    """Canaries start on the prompts page; here they are read, and stopped through the service."""

    list_display = [
        "__str__",
        "label",
        "candidate_version",
        "control_version",
        "share_percent",
        "state",
        "started_at",
        "ended_at",
        "end_reason",
    ]
    list_filter = ["state", "label__workflow"]
    list_select_related = ["label", "candidate_version", "control_version"]
    actions = ["stop_selected"]

    def has_stop_permission(self, request):
        return request.user.has_perm(MOVE_PRODUCTION_LABEL)

    @admin.action(description="Stop selected canaries", permissions=["stop"])
    def stop_selected(self, request, queryset):
        stopped = 0
        for canary in queryset.filter(state=Canary.State.RUNNING):
            canary_stop(canary=canary, user=request.user, reason="Stopped in the admin.")
            stopped += 1
        self.message_user(request, f"{stopped} canaries stopped.")


# --- Model options ------------------------------------------------------------------------------


class ModelOptionChangeInline(ReadOnlyInline):
    model = ModelOptionChange
    fields = ["changed_at", "enabled", "changed_by"]
    readonly_fields = fields
    verbose_name_plural = "Enable/disable history"


@admin.register(ModelOption)
class ModelOptionAdmin(LauncherAdmin):
    list_display = [
        "name",
        "provider",
        "model",
        "is_computer_use",
        "is_archived_upstream",
        "is_system_default",
        "present_upstream",
        "enabled",
        "is_offered",
    ]
    list_filter = ["enabled", "is_computer_use", "is_archived_upstream", "present_upstream"]
    search_fields = ["name", "model", "provider"]
    fields = [
        "name",
        "id",
        "provider",
        "model",
        "description",
        "is_computer_use",
        "is_archived_upstream",
        "is_system_default",
        "present_upstream",
        "synced_at",
        "enabled",
        "price_input_per_million",
        "price_output_per_million",
    ]
    readonly_fields = [
        f
        for f in fields
        if f not in ("enabled", "price_input_per_million", "price_output_per_million")
    ]
    inlines = [ModelOptionChangeInline]
    actions = ["enable_selected", "disable_selected"]

    @admin.display(boolean=True, description="Offered")
    def is_offered(self, option):
        return option.is_offered

    def has_add_permission(self, request):
        return False  # rows come from the API (sync)

    def has_delete_permission(self, request, obj=None):
        return False  # runs point at them

    def save_model(self, request, obj, form, change):
        if "enabled" in form.changed_data:
            model_set_enabled(model_option=obj, enabled=obj.enabled, user=request.user)
        obj.save(update_fields=["price_input_per_million", "price_output_per_million"])

    @admin.action(description="Enable selected models", permissions=["change"])
    def enable_selected(self, request, queryset):
        for option in queryset:
            model_set_enabled(model_option=option, enabled=True, user=request.user)
        self.message_user(request, f"{queryset.count()} models enabled.")

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable_selected(self, request, queryset):
        for option in queryset:
            model_set_enabled(model_option=option, enabled=False, user=request.user)
        self.message_user(request, f"{queryset.count()} models disabled.")
