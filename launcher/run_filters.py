"""The runs page's filters: a GET form whose values live in the URL, so a filtered view can be
bookmarked and shared. Parsing needs no database; what each select offers comes from
`selectors.run_filter_choices()` and is only loaded for the full page (not for its poll)."""

from __future__ import annotations

import uuid
from datetime import date

from django import forms

from launcher.models import RunStatus
from launcher.parsing import MAX_ID, id_parse
from launcher.selectors import DEFAULT_MODEL, STORED_PROMPT, RunCursor, RunFilters

SEARCH_MAX_LENGTH = 200


class RunFilterForm(forms.Form):
    """Each field's error says what was wrong and that the filter is ignored, so a mistyped
    link never silently shows everything."""

    q = forms.CharField(
        required=False,
        max_length=SEARCH_MAX_LENGTH,
        strip=True,
        label="Search",
        error_messages={"max_length": "Search for at most %(limit_value)d characters."},
    )
    workflow = forms.CharField(required=False)
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any status"), *RunStatus.choices],
        error_messages={"invalid_choice": "“%(value)s” is not a status: choose one from the list."},
    )
    model = forms.CharField(required=False)
    prompt = forms.CharField(required=False)
    label = forms.SlugField(
        required=False,
        max_length=50,
        error_messages={"invalid": "A label is letters, digits, - and _ only."},
    )
    launched_by = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        error_messages={"invalid": "Choose a person from the list."},
    )
    batch = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        error_messages={"invalid": "Choose a batch from the list."},
    )
    created_from = forms.DateField(
        required=False,
        label="From",
        error_messages={"invalid": "Enter a real date as YYYY-MM-DD (e.g. 2026-03-31)."},
    )
    created_to = forms.DateField(
        required=False,
        label="To",
        error_messages={"invalid": "Enter a real date as YYYY-MM-DD (e.g. 2026-03-31)."},
    )

    def __init__(self, data=None, *args, **kwargs):
        # `?search=` is read as `?q=` (a link someone typed by hand).
        if data is not None and not data.get("q") and data.get("search"):
            data = data.copy()
            data["q"] = data["search"]
        super().__init__(data, *args, **kwargs)

    def clean_q(self) -> str:
        value = self.cleaned_data["q"]
        # U+0000 cannot be stored or searched for in PostgreSQL text; nobody types it.
        if "\x00" in value:
            raise forms.ValidationError("Search text cannot hold control characters.")
        return value

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

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("created_from"), cleaned.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "“To” is before “From”: choose a later day.")
        return cleaned

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
            search=cleaned.get("q") or "",
        )

    @property
    def is_filtered(self) -> bool:
        return any(self.data.get(name) for name in self.fields)

    @property
    def ignored(self) -> list[str]:
        """The labels of the filters that were not understood (and so are not applied)."""
        labels = {"q": "Search", "launched_by": "Launched by", "prompt": "Prompt version"}
        return [labels.get(name, self.fields[name].label or name.title()) for name in self.errors]


def run_list_cursors(params) -> tuple[RunCursor | None, RunCursor | None, bool]:
    """The page's position from its link (`before=` / `after=`), and whether a cursor was
    there but unreadable (the list then starts at the newest runs and says so)."""
    before, after = params.get("before", ""), params.get("after", "")
    parsed_before = RunCursor.parse(before) if before else None
    parsed_after = RunCursor.parse(after) if after else None
    broken = bool(before and parsed_before is None) or bool(after and parsed_after is None)
    return parsed_before, parsed_after, broken


def _is_id(value: str) -> bool:
    return id_parse(value) is not None


def _uuid_or_error(value: str, message: str) -> str:
    if not value:
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise forms.ValidationError(message) from None
