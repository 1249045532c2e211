"""Forms of the prompts page: moving a label (with its evidence) and starting a canary."""

from __future__ import annotations

from django import forms

from launcher.models import Batch, Canary, PromptVersion
from launcher.parsing import id_parse

REASON_HELP = "Why the label points here now; kept in the label history."


def evidence_choices(*, batches: list[Batch], canaries: list[Canary]) -> list[tuple[str, str]]:
    """`batch:<pk>` / `canary:<pk>` choices, newest first; "" = the newest that qualifies."""
    choices = [("", "The newest finished batch that qualifies")]
    choices += [
        (f"batch:{batch.pk}", f"{batch} ({batch.created_at:%d %b %Y})") for batch in batches
    ]
    choices += [
        (f"canary:{canary.pk}", f"{canary} (candidate v{canary.candidate_version.number})")
        for canary in canaries
    ]
    return choices


class LabelMoveForm(forms.Form):
    """Move a label (`production` from "Promote to production") to a version."""

    label = forms.SlugField(max_length=50, widget=forms.HiddenInput)
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    evidence = forms.ChoiceField(
        label="Evidence",
        required=False,
        help_text="The finished batch (or canary) whose runs show this version is good enough.",
    )
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        required=False,
        help_text=REASON_HELP,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    without_evidence = forms.BooleanField(
        label="Promote without evidence (say why above)",
        required=False,
    )

    def __init__(self, *args, evidence_options=(), may_override=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["evidence"].choices = list(evidence_options) or [("", "—")]
        if not may_override:
            del self.fields["without_evidence"]


def evidence_parse(value: str, *, batches: list[Batch], canaries: list[Canary]):
    """The (batch, canary) an evidence choice names, among those offered; (None, None) else."""
    kind, _, text = (value or "").partition(":")
    pk = id_parse(text)
    if pk is None:
        return None, None
    if kind == "batch":
        return next((b for b in batches if b.pk == pk), None), None
    if kind == "canary":
        return None, next((c for c in canaries if c.pk == pk), None)
    return None, None


class CanaryStartForm(forms.Form):
    label = forms.SlugField(max_length=50, widget=forms.HiddenInput)
    candidate = forms.TypedChoiceField(label="Candidate version", coerce=int)
    share_percent = forms.IntegerField(
        label="Share of launches (%)",
        min_value=1,
        max_value=50,
        initial=10,
        help_text="1–50 % of the launches that resolve the label take the candidate.",
    )

    def __init__(self, *args, versions: list[PromptVersion] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["candidate"].choices = [(v.pk, f"v{v.number}") for v in versions]
