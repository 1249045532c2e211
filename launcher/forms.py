"""The launch form: a workflow, a model, a prompt choice, the workflow's inputs, and a one-time
token.

The form is built for one workflow: its Model and Prompt choices and its input fields depend on
it (and the input fields also on the chosen prompt, whose `{name}` variables the schema may
lack). Choosing another workflow or prompt re-renders the form for it ("refresh"), keeping what
was typed — except sensitive values and files, which are never echoed back.

The hidden `token` is the run's idempotency key: the service stores the run under it before
calling the API, so a double click or a resubmitted form finds the same run instead of sending a
second one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django import forms
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from launcher.cyberdesk import errors
from launcher.inputs import (
    InputKind,
    InputPayload,
    InputSpec,
    initial_value,
    input_payload,
    input_schema_errors,
    input_specs,
)
from launcher.models import ModelOption, Workflow
from launcher.selectors import (
    model_default_name,
    models_offered,
    prompt_choice_default,
    prompt_choices,
)
from launcher.services.prompts import (
    PromptChoiceInvalid,
    ResolvedPrompt,
    prompt_resolve_choice,
    prompt_variable_warnings,
    prompt_variables,
)

MODEL_NOT_OFFERED = "That model is no longer offered; choose another."


class LaunchForm(forms.Form):
    workflow = forms.ChoiceField(label="Workflow")
    model = forms.ChoiceField(
        label="Model",
        required=False,
        error_messages={"invalid_choice": MODEL_NOT_OFFERED},
    )
    prompt = forms.ChoiceField(
        label="Prompt",
        error_messages={"invalid_choice": "That prompt choice does not exist (any more)."},
    )
    token = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={
            "required": "This form has expired. Check the values and launch again.",
            "invalid": "This form has expired. Check the values and launch again.",
        },
    )

    def __init__(
        self,
        data=None,
        files=None,
        *,
        workflows: Sequence[Workflow],
        workflow: Workflow | None,
        initial: Mapping[str, Any] | None = None,
        echo: Mapping[str, Any] | None = None,
    ):
        """`workflows` are the ones offered; `workflow` the one the form is for. `echo` holds
        values typed so far (a refresh after choosing another workflow or prompt): they are
        shown again without being validated."""
        initial = dict(initial or {})
        initial.setdefault("token", str(uuid.uuid4()))
        super().__init__(data, files, initial=initial)
        self.workflow_obj = workflow
        self.fields["workflow"].choices = [(str(w.pk), w.name or str(w.pk)) for w in workflows]
        self.offered_models = {str(m.pk): m for m in models_offered()} if workflow else {}
        self.input_specs: list[InputSpec] = []
        self.payload = InputPayload()
        self.resolved_prompt: ResolvedPrompt | None = None
        self.prompt_error = ""
        if workflow is None:
            for name in ("model", "prompt"):
                self.fields[name].required = False
            return
        self.initial["workflow"] = str(workflow.pk)
        self.fields["model"].choices = [
            ("", f"Workflow default ({model_default_name(workflow)})"),
            *[(pk, option.name) for pk, option in self.offered_models.items()],
        ]
        self.fields["prompt"].choices = prompt_choices(workflow)
        self.initial.setdefault("prompt", prompt_choice_default(workflow))
        if echo:
            for name in ("model", "prompt"):
                if echo.get(name) is not None:
                    self.initial[name] = echo[name]

        self._resolve_prompt_for_display()
        self.input_specs = input_specs(workflow.input_schema, self._prompt_variable_keys())
        for spec in self.input_specs:
            field = spec.form_field()
            if spec.has_default and spec.default is not None:
                field.initial = initial_value(spec, spec.default)
            self.fields[spec.field_name] = field
        if echo:
            self._show_again(echo)

    # --- What the page shows -------------------------------------------------------------------

    def chosen(self, name: str) -> str:
        """The submitted value of a choice field, else its initial value."""
        if self.is_bound:
            return self.data.get(self.add_prefix(name), "") or ""
        return str(self.initial.get(name) or self.fields[name].initial or "")

    @property
    def chosen_prompt(self) -> str:
        return self.chosen("prompt") or prompt_choice_default(self.workflow_obj)

    def _resolve_prompt_for_display(self) -> None:
        choice = self.chosen_prompt
        try:
            self.resolved_prompt = prompt_resolve_choice(workflow=self.workflow_obj, choice=choice)
        except PromptChoiceInvalid as exc:
            self.prompt_error = str(exc)

    @property
    def prompt_text(self) -> str:
        """The text the run would use: the chosen version's, or the workflow's stored prompt."""
        if self.resolved_prompt is not None and self.resolved_prompt.text is not None:
            return self.resolved_prompt.text
        return self.workflow_obj.main_prompt if self.workflow_obj else ""

    @property
    def prompt_preview(self) -> SafeString:
        return highlight_prompt_variables(self.prompt_text)

    @property
    def prompt_warnings(self) -> list[str]:
        if self.workflow_obj is None:
            return []
        return prompt_variable_warnings(self.workflow_obj, self.prompt_text)

    def _prompt_variable_keys(self) -> list[str]:
        plain, secret = prompt_variables(self.prompt_text)
        return sorted(plain) + sorted(f"${name}" for name in secret)

    def input_fields(self) -> list[forms.BoundField]:
        return [self[spec.field_name] for spec in self.input_specs]

    @property
    def sensitive_keys(self) -> list[str]:
        return [spec.key for spec in self.input_specs if spec.sensitive]

    @property
    def file_keys(self) -> list[str]:
        return [spec.key for spec in self.input_specs if spec.kind == InputKind.FILE]

    def _show_again(self, echo: Mapping[str, Any]) -> None:
        for spec in self.input_specs:
            if spec.sensitive or spec.kind == InputKind.FILE:
                continue  # never echoed back
            if spec.kind == InputKind.BOOLEAN:
                # An unticked box is absent from a post; absent means False, not the default.
                self.initial[spec.field_name] = echo.get(spec.field_name) not in (
                    None,
                    "",
                    "false",
                    "off",
                )
            elif spec.field_name in echo:
                self.initial[spec.field_name] = echo[spec.field_name]

    def prefill_inputs(self, values: Mapping[str, Any]) -> None:
        """Show stored JSON input values (of an earlier run) in the input fields."""
        for spec in self.input_specs:
            if spec.key in values and not spec.sensitive and spec.kind != InputKind.FILE:
                self.initial[spec.field_name] = initial_value(spec, values[spec.key])

    def renew_token(self) -> None:
        """A fresh token after a definitive failure: the corrected form is a new launch."""
        if self.is_bound:
            self.data = self.data.copy()
            self.data[self.add_prefix("token")] = str(uuid.uuid4())
        else:
            self.initial["token"] = str(uuid.uuid4())

    # --- Validation ----------------------------------------------------------------------------

    def clean_workflow(self) -> Workflow:
        value = self.cleaned_data["workflow"]
        if self.workflow_obj is None or str(self.workflow_obj.pk) != value:
            raise forms.ValidationError("Choose a workflow.")
        return self.workflow_obj

    def clean_model(self) -> ModelOption | None:
        value = self.cleaned_data.get("model") or ""
        if not value:
            return None  # "Workflow default": no override is sent
        option = self.offered_models.get(value)
        if option is None:
            raise forms.ValidationError(MODEL_NOT_OFFERED)
        return option

    def clean_prompt(self) -> ResolvedPrompt:
        try:
            return prompt_resolve_choice(
                workflow=self.workflow_obj, choice=self.cleaned_data["prompt"]
            )
        except PromptChoiceInvalid as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        if self.workflow_obj is None:
            return cleaned
        failed = {spec.key for spec in self.input_specs if spec.field_name in self.errors}
        valid = {k: v for k, v in cleaned.items() if k not in self.errors}
        self.payload = input_payload(self.input_specs, valid)
        by_key, general = input_schema_errors(
            self.workflow_obj.input_schema, self.payload.effective(), skip_keys=failed
        )
        field_names = {spec.key: spec.field_name for spec in self.input_specs}
        for key, messages in by_key.items():
            for message in messages:
                if key in field_names:
                    self.add_error(field_names[key], message)
                else:
                    self.add_error(None, f"{key}: {message}")
        for message in general:
            self.add_error(None, message)
        return cleaned

    def add_api_errors(self, error: errors.InvalidRequest) -> None:
        """Put the API's own validation errors next to the fields they name."""
        field_names = {spec.key: spec.field_name for spec in self.input_specs}
        placed = False
        for path, messages in (error.field_errors or {}).items():
            target = _field_for_api_path(path, field_names)
            for message in messages:
                if target is None:
                    self.add_error(None, f"{path}: {message}")
                else:
                    self.add_error(target, message)
                placed = True
        for message in error.messages or []:
            self.add_error(None, message)
            placed = True
        if not placed:
            self.add_error(None, str(error))


def _field_for_api_path(path: str, field_names: Mapping[str, str]) -> str | None:
    parts = path.split(".")
    head, rest = parts[0], parts[1:]
    if head == "input_values" and rest and rest[0] in field_names:
        return field_names[rest[0]]
    if head == "sensitive_input_values" and rest and f"${rest[0]}" in field_names:
        return field_names[f"${rest[0]}"]
    if head in ("main_agent_model_id", "model_metadata"):
        return "model"
    if head == "main_prompt":
        return "prompt"
    return None


# A `{name}`, `{a.b[0]}` or `{$secret}` variable, not escaped (`\{x}`) and not a runtime
# `{{x}}` variable. It is applied to already-escaped text: escaping leaves these characters be.
_VARIABLE = re.compile(r"(?<![\\{])\{(\$?)([A-Za-z_][\w.\[\]]*)\}(?!\})")


def highlight_prompt_variables(text: str) -> SafeString:
    """The prompt text, HTML-escaped, with its input variables wrapped in <mark>."""

    def mark(match: re.Match) -> str:
        css = "var var-secret" if match.group(1) else "var"
        return f'<mark class="{css}">{match.group(0)}</mark>'

    return mark_safe(_VARIABLE.sub(mark, escape(text or "")))  # noqa: S308 — escaped first
