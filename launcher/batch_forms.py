"""The batch form (`/batches/new`): one workflow, one or more models, one or more prompt
choices, and the inputs — rows from an uploaded or pasted CSV / JSON Lines file, or a count of
identical runs. The batch is rows × models × prompt choices.

Validating the form checks every row (`services.batches.batch_rows_check`) without storing
anything: the page then previews the number of runs and each bad row. `fingerprint` names
exactly what was previewed, so "Launch" after a preview sends the valid rows of *that* preview,
and a changed form is previewed again first.

Secrets and files are never stored, so a batch carries neither (see the help texts).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from launcher.inputs import InputKind, InputSpec, input_specs
from launcher.models import ModelOption, Workflow
from launcher.selectors import model_default_name, models_offered, prompt_choices
from launcher.services.batches import (
    CSV,
    JSONL,
    RowCheck,
    batch_blocker,
    batch_inputs_check,
    batch_inputs_strip_secrets,
    batch_prompt_problems,
    batch_rows_check,
    batch_rows_strip_secrets,
    batch_size,
    max_runs,
)
from launcher.services.prompts import PromptChoiceInvalid, ResolvedPrompt, prompt_resolve_choice

DEFAULT_MODEL = "default"
ROWS = "rows"
COUNT = "count"
PREVIEW_RUNS = 20  # the preview lists this many of the runs it will create, then "and N more"
# Fields a workflow change carries over to the form for the new workflow (models and prompts
# are the old workflow's choices, so they start again from the defaults).
KEPT_ON_WORKFLOW_CHANGE = (
    "token",
    "name",
    "source",
    "rows_text",
    "input_format",
    "count",
    "inputs_json",
)
ROWS_HELP = (
    "One run per row. CSV: the first line names the input keys. JSON Lines: one JSON object per "
    "line. Sensitive inputs ($name) and files cannot come from a batch — secrets are never "
    "stored — so launch runs that need them one at a time."
)


class BatchForm(forms.Form):
    token = forms.UUIDField(widget=forms.HiddenInput)
    workflow = forms.CharField(widget=forms.HiddenInput)
    name = forms.CharField(label="Batch name", required=False, max_length=200)
    models = forms.MultipleChoiceField(
        label="Models",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one model."},
    )
    prompts = forms.MultipleChoiceField(
        label="Prompts",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one prompt."},
    )
    source = forms.ChoiceField(
        label="Inputs",
        widget=forms.RadioSelect,
        choices=[
            (ROWS, "Rows from a CSV or JSON Lines file"),
            (COUNT, "A number of identical runs"),
        ],
        initial=ROWS,
    )
    rows_file = forms.FileField(label="Upload rows", required=False)
    rows_text = forms.CharField(
        label="Rows",
        required=False,
        # Not stripped: leading blank lines count in the line numbers the preview shows.
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text=ROWS_HELP,
    )
    input_format = forms.ChoiceField(
        label="Format",
        required=False,
        choices=[("", "Detect"), (CSV, "CSV"), (JSONL, "JSON Lines")],
    )
    count = forms.IntegerField(label="Number of runs", required=False, min_value=1)
    inputs_json = forms.CharField(
        label="Inputs for every run (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text='A JSON object, e.g. {"customer_id": "c-100"}. No secrets.',
    )
    previewed = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, data=None, files=None, *, workflow: Workflow, **kwargs):
        super().__init__(data, files, **kwargs)
        self.workflow_obj = workflow
        self.initial.setdefault("token", str(uuid.uuid4()))
        self.initial.setdefault("workflow", str(workflow.pk))
        self.fields["count"].max_value = max_runs()
        self.offered_models = {str(m.pk): m for m in models_offered()}
        # No checkbox label may contain "Workflow": the page's Workflow picker must be the one
        # control people (and tests, with a substring match) find by that name.
        self.fields["models"].choices = [
            (DEFAULT_MODEL, f"Default model ({model_default_name(workflow)})"),
            *[(pk, option.name) for pk, option in self.offered_models.items()],
        ]
        self.fields["prompts"].choices = [
            (value, "Stored prompt (no override)" if value == "stored" else display)
            for value, display in prompt_choices(workflow)
        ]
        self.initial.setdefault("models", [DEFAULT_MODEL])
        self.initial.setdefault("prompts", ["stored"])
        self.blocker = batch_blocker(workflow)
        self.chosen_models: list[ModelOption | None] = []
        self.chosen_prompts: list[ResolvedPrompt] = []
        self.check = RowCheck()
        self.rows_text = ""

    # --- Validation ------------------------------------------------------------------------------

    def clean_workflow(self) -> Workflow:
        if self.cleaned_data["workflow"] != str(self.workflow_obj.pk):
            raise forms.ValidationError("Choose a workflow.")
        return self.workflow_obj

    def clean_models(self) -> list[ModelOption | None]:
        chosen = []
        for value in self.cleaned_data["models"]:
            if value == DEFAULT_MODEL:
                chosen.append(None)
            elif value in self.offered_models:
                chosen.append(self.offered_models[value])
        self.chosen_models = chosen
        return chosen

    def clean_prompts(self) -> list[ResolvedPrompt]:
        resolved, problems = [], []
        for value in self.cleaned_data["prompts"]:
            try:
                prompt = prompt_resolve_choice(workflow=self.workflow_obj, choice=value)
            except PromptChoiceInvalid as exc:
                problems.append(str(exc))
                continue
            problems += batch_prompt_problems(prompt, self.workflow_obj)
            resolved.append(prompt)
        if problems:
            raise forms.ValidationError(problems)
        self.chosen_prompts = resolved
        return resolved

    def clean_rows_file(self):
        upload = self.cleaned_data.get("rows_file")
        if not upload:
            return None
        if upload.size > settings.FILE_INPUT_MAX_BYTES:
            raise forms.ValidationError(
                f"This file is {filesizeformat(upload.size)}; the limit is "
                f"{filesizeformat(settings.FILE_INPUT_MAX_BYTES)}."
            )
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "Save the file as UTF-8 text (CSV or JSON Lines)."
            ) from None

    def clean(self):
        cleaned = super().clean()
        uploaded = cleaned.get("rows_file")
        # An uploaded file replaces the pasted rows, and is shown in their place from now on,
        # so that previewing and then launching need not upload it again.
        self.rows_text = _lf(uploaded if uploaded is not None else cleaned.get("rows_text") or "")
        # Trailing line breaks mean nothing, and a textarea may add or drop one.
        self.rows_text = self.rows_text.rstrip("\n")
        # Secrets are never kept, nor shown again: their columns leave the rows before anything.
        self.rows_text, removed = batch_rows_strip_secrets(
            self.rows_text, cleaned.get("input_format") or ""
        )
        if removed:
            self.add_error("rows_text", _secrets_removed(removed))
        cleaned["inputs_json"] = _lf(cleaned.get("inputs_json") or "")
        inputs_json, removed = batch_inputs_strip_secrets(cleaned["inputs_json"])
        if removed:
            self.data = self.data.copy()
            self.data["inputs_json"] = cleaned["inputs_json"] = inputs_json
            self.add_error("inputs_json", _secrets_removed(removed))
        # Only now, with the secrets out of what is shown again: a workflow that needs
        # secrets is refused whatever was entered.
        if self.blocker:
            raise forms.ValidationError(self.blocker)
        if self.errors or not self.chosen_prompts:
            return cleaned
        if cleaned.get("source") == COUNT:
            count = cleaned.get("count")
            if not count:
                self.add_error("count", "How many runs?")
                return cleaned
            self.check = batch_inputs_check(
                workflow=self.workflow_obj,
                prompts=self.chosen_prompts,
                inputs=cleaned.get("inputs_json") or "",
                count=count,
            )
            for message in self.check.file_errors:
                self.add_error("inputs_json", message)
        else:
            self.check = batch_rows_check(
                workflow=self.workflow_obj,
                prompts=self.chosen_prompts,
                text=self.rows_text,
                input_format=cleaned.get("input_format") or "",
            )
            for message in self.check.file_errors:
                self.add_error("rows_text", message)
            if not self.check.file_errors and not self.check.rows:
                self.add_error("rows_text", "No row is valid: correct the rows listed below.")
        total = self.total_runs
        if total > max_runs():
            self.add_error(None, f"That is {total} runs; a batch is at most {max_runs()}.")
        return cleaned

    # --- What the page shows ---------------------------------------------------------------------

    @property
    def total_runs(self) -> int:
        return batch_size(
            rows=len(self.check.rows),
            models=len(self.chosen_models),
            prompts=len(self.chosen_prompts),
        )

    @property
    def fingerprint(self) -> str:
        """What a preview showed: the rows, choices and source, hashed."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        described = {
            "workflow": str(self.workflow_obj.pk),
            "models": sorted(str(m.pk) if m else DEFAULT_MODEL for m in self.chosen_models),
            "prompts": sorted(p.choice.value for p in self.chosen_prompts),
            "source": data.get("source"),
            "rows": self.rows_text,
            "format": data.get("input_format"),
            "count": data.get("count"),
            "inputs": data.get("inputs_json"),
        }
        encoded = json.dumps(described, sort_keys=True, default=str).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()

    @property
    def previewed_this(self) -> bool:
        return bool(self.data.get("previewed")) and self.data.get("previewed") == self.fingerprint

    def show_again(self) -> None:
        """Re-render with the rows as they were checked (an uploaded file's text included) and
        this preview's fingerprint."""
        self.data = self.data.copy()
        self.data["rows_text"] = self.rows_text
        self.data["previewed"] = self.fingerprint if self.is_valid() else ""

    @property
    def columns(self) -> list[InputSpec]:
        """The columns (CSV) or keys (JSON Lines) a row may have: the workflow's inputs that a
        batch can carry (no secrets, no files)."""
        return batch_columns(self.workflow_obj)

    @property
    def bad_rows_shown(self) -> list[tuple]:
        """Each bad row with its line of the file, so people see what is wrong, not only where."""
        lines = self.rows_text.split("\n")
        shown = []
        for row in self.check.bad_rows:
            content = lines[row.line - 1] if row.line and 0 < row.line <= len(lines) else ""
            shown.append((row, content))
        return shown

    @property
    def preview_runs(self) -> list[PreviewRun]:
        """The first PREVIEW_RUNS runs the batch will create, in plan order (row, model, prompt)."""
        combos = itertools.product(self.check.rows, self.chosen_models, self.chosen_prompts)
        return [
            PreviewRun(
                row=row.number,
                line=row.line,
                model=model.name if model else "Workflow default",
                prompt=prompt.description,
                inputs=json.dumps(row.values, ensure_ascii=False, default=str),
            )
            for row, model, prompt in itertools.islice(combos, PREVIEW_RUNS)
        ]

    @property
    def preview_more(self) -> int:
        return max(0, self.total_runs - PREVIEW_RUNS)

    def models_text(self) -> Sequence[str]:
        return [m.name if m else "Workflow default" for m in self.chosen_models]


@dataclass(frozen=True)
class PreviewRun:
    row: int
    line: int | None
    model: str
    prompt: str
    inputs: str  # the row's inputs as compact JSON


def batch_columns(workflow: Workflow) -> list[InputSpec]:
    """The inputs a batch row can fill: every schema input except secrets and files."""
    return [
        spec
        for spec in input_specs(workflow.input_schema)
        if not spec.sensitive and spec.kind != InputKind.FILE
    ]


def batch_form_kept(data) -> dict:
    """What a workflow change keeps of the form (the rows stay, without secret columns)."""
    kept = {name: data.get(name) for name in KEPT_ON_WORKFLOW_CHANGE if data.get(name)}
    if kept.get("rows_text"):
        kept["rows_text"], _ = batch_rows_strip_secrets(
            _lf(kept["rows_text"]), kept.get("input_format") or ""
        )
    if kept.get("inputs_json"):
        kept["inputs_json"], _ = batch_inputs_strip_secrets(kept["inputs_json"])
    if kept.get("token"):
        # A new workflow is a new batch: a fresh token, so it is never taken for the old one.
        kept["token"] = str(uuid.uuid4())
    return kept


def _lf(text: str) -> str:
    """Line endings as LF. A browser sends a textarea back with CRLF (HTML's form encoding),
    while an uploaded file may have either: without this (and without ignoring trailing line
    breaks), the preview of an uploaded file and the same rows sent back from the textarea had
    different fingerprints, and "Launch" only previewed again."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _secrets_removed(names: list[str]) -> str:
    named = [name for name in names if name != "$…"]
    unreadable = (
        " Part of it could not be read, and seemed to hold one, so that part is not shown "
        "again: enter it again without secrets."
        if "$…" in names
        else ""
    )
    what = f" ({', '.join(named)})" if named else ""
    return (
        f"Sensitive inputs cannot come from a batch{what}: secrets are never stored, so they "
        "were taken out of what you entered. Launch runs that need them one at a time." + unreadable
    )
