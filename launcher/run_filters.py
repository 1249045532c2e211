"""The runs page's filters: a GET form whose values live in the URL, so a filtered view can be
bookmarked and shared. Parsing needs no database; what each select offers comes from
`selectors.run_filter_choices()` and is only loaded for the full page (not for its poll)."""

from __future__ import annotations

import uuid
from datetime import date

from django import forms

from launcher.models import RunStatus
from launcher.parsing import MAX_ID, id_parse
from launcher.selectors import DEFAULT_MODEL, STORED_PROMPT, RunFilters


class RunFilterForm(forms.Form):
    workflow = forms.CharField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *RunStatus.choices])
    model = forms.CharField(required=False)
    prompt = forms.CharField(required=False)
    label = forms.SlugField(required=False, max_length=50)
    launched_by = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    batch = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    created_from = forms.DateField(required=False, label="From")
    created_to = forms.DateField(required=False, label="To")

    def clean_workflow(self) -> str:
        return _uuid_or_error(self.cleaned_data["workflow"], "Choose a workflow from the list.")

    def clean_model(self) -> str:
        value = self.cleaned_data["model"]
        if value == DEFAULT_MODEL:
            return value
        return _uuid_or_error(value, "Choose a model from the list.")

    def clean_prompt(self) -> str:
        value = self.cleaned_data["prompt"]
        if value and value != STORED_PROMPT and not _is_id(value):
            raise forms.ValidationError("Choose a prompt version from the list.")
        return value

    def clean_created_to(self) -> date | None:
        value = self.cleaned_data["created_to"]
        # The list asks for runs before the next day's start, and date.max has none.
        if value == date.max:
            raise forms.ValidationError("Choose an earlier day.")
        return value

    def filters(self) -> RunFilters:
        """The valid filters (an invalid one is ignored, and its error shown beside it)."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return RunFilters(
            workflow_id=cleaned.get("workflow") or "",
            status=cleaned.get("status") or "",
            model=cleaned.get("model") or "",
            prompt_version=cleaned.get("prompt") or "",
            label=cleaned.get("label") or "",
            launched_by=cleaned.get("launched_by"),
            batch=cleaned.get("batch"),
            created_from=cleaned.get("created_from"),
            created_to=cleaned.get("created_to"),
        )

    @property
    def is_filtered(self) -> bool:
        return any(self.data.get(name) for name in self.fields)


def _is_id(value: str) -> bool:
    return id_parse(value) is not None


def _uuid_or_error(value: str, message: str) -> str:
    if not value:
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise forms.ValidationError(message) from None
