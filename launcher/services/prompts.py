"""Prompt versions: saving them, labelling them, resolving a run's prompt choice, checking
their variables, importing the workflow's stored prompt and publishing a version to it.

A version never changes once saved (the model refuses); "editing" saves a new version that
remembers which one it started from (`based_on`). Labels are named pointers at one version of a
workflow; every move is recorded. `latest` is derived (the newest version), never stored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils.text import slugify

from launcher.cyberdesk import get_client
from launcher.models import (
    PromptLabel,
    PromptLabelMove,
    PromptMode,
    PromptVersion,
    Workflow,
    sha256_text,
)
from launcher.parsing import id_parse
from launcher.services.workflows import workflow_refresh, workflow_store

logger = logging.getLogger(__name__)

MOVE_PRODUCTION_LABEL = "launcher.move_production_label"
# Move a protected label with a written reason when the evidence is missing.
PROMOTE_WITHOUT_EVIDENCE = "launcher.promote_without_evidence"
# Publishing patches the upstream workflow's stored prompt, which every run without an override
# uses. The mirror itself is never edited here, so "change workflow" means exactly this.
PUBLISH_PROMPT = "launcher.change_workflow"
LATEST = "latest"


class PromptError(Exception):
    """A prompt operation that cannot be done; the message is safe to show to the user."""


class PromptChoiceInvalid(PromptError):
    """A prompt choice that does not name anything usable for this workflow."""


class PromptTextInvalid(PromptError):
    """A version's text that cannot be saved (empty)."""


class PromptLabelInvalid(PromptError):
    """A label name that cannot be used (`latest`, not a slug) or a version of another workflow."""


# --- Variables ----------------------------------------------------------------------------------

# Order matters: escapes first, then runtime `{{x}}`, then `{x}` / `{$x}`.
_PLACEHOLDER = re.compile(
    r"""
    \\\{\{[^{}]*\}\}                 # \{{x}}  an escaped runtime variable: literal text
  | \\\{[^{}]*\}                     # \{x} or \{$x}  an escaped variable: literal text
  | \{\{[^{}]*\}\}                   # {{x}}  runtime variable, set during the run
  | \{(?P<secret>\$?)(?P<path>[A-Za-z_][\w.\[\]]*)\}   # {x}, {x.y[0]}, {$x}
    """,
    re.VERBOSE,
)
_PATH_ROOT = re.compile(r"[.\[]")


def prompt_variables(text: str) -> tuple[set[str], set[str]]:
    """The root names of the `{name}` (plain) and `{$name}` (secret) variables of a prompt.

    Dot and bracket paths count by their root (`{patient.dob}` → `patient`); runtime
    `{{name}}` variables and backslash-escaped `\\{name}` are not inputs.
    """
    plain: set[str] = set()
    secret: set[str] = set()
    for match in _PLACEHOLDER.finditer(text or ""):
        path = match.group("path")
        if path is None:
            continue
        root = _PATH_ROOT.split(path, maxsplit=1)[0]
        (secret if match.group("secret") else plain).add(root)
    return plain, secret


def _schema_properties(workflow: Workflow) -> set[str]:
    schema = workflow.input_schema
    if not isinstance(schema, dict):
        return set()
    properties = schema.get("properties")
    return set(properties) if isinstance(properties, dict) else set()


def prompt_variable_warnings(workflow: Workflow, text: str) -> list[str]:
    """What is wrong with a prompt's variables for this workflow, as sentences to show.

    - `{name}` whose root the workflow's `input_schema` does not define;
    - `{name}` where the schema defines the secret `$name` (the secret would be sent in clear
      to the model, or not filled at all): it should be `{$name}`;
    - `{$name}` whose `$name` the schema does not define.
    """
    properties = _schema_properties(workflow)
    plain, secret = prompt_variables(text)
    warnings = []
    for name in sorted(plain):
        if name in properties:
            continue
        if f"${name}" in properties:
            warnings.append(
                f"{{{name}}} uses the secret input {name} as plain text: write {{${name}}}."
            )
        else:
            warnings.append(f"{{{name}}} is not defined in the workflow's input schema.")
    for name in sorted(secret):
        if f"${name}" not in properties:
            warnings.append(f"{{${name}}} is not defined in the workflow's input schema.")
    return warnings


# --- Versions -----------------------------------------------------------------------------------


def prompt_version_create(
    *,
    workflow: Workflow,
    text: str,
    note: str = "",
    author=None,
    based_on: PromptVersion | None = None,
    confirm_unknown_variables: bool = True,
    imported_from_workflow: bool = False,
) -> PromptVersion:
    """Save a new version numbered one after the workflow's newest.

    A text with variable problems (`prompt_variable_warnings`: a `{variable}` the schema lacks…)
    and `confirm_unknown_variables=False` is saved unconfirmed: it is not "Latest" until an
    editor confirms it (`prompt_version_confirm`). The admin saves such a text only after the
    editor pressed "Save with unknown variables"; an import saves it unconfirmed.

    Two editors saving at once must not get the same number: the workflow row is locked for
    the numbering (PostgreSQL; SQLite serialises writers with IMMEDIATE transactions), and the
    unique (workflow, number) constraint backs it up with one retry.
    """
    if not text or not text.strip():
        raise PromptTextInvalid("The prompt text cannot be empty.")
    if based_on is not None and based_on.workflow_id != workflow.pk:
        raise PromptTextInvalid("A version can only be based on a version of the same workflow.")
    confirmed = confirm_unknown_variables or not prompt_variable_warnings(workflow, text)
    for attempt in range(2):
        try:
            with transaction.atomic():
                Workflow.objects.select_for_update().filter(pk=workflow.pk).exists()
                newest = PromptVersion.objects.filter(workflow=workflow).aggregate(
                    newest=Max("number")
                )["newest"]
                return PromptVersion.objects.create(
                    workflow=workflow,
                    number=(newest or 0) + 1,
                    text=text,
                    note=note or "",
                    author=author,
                    based_on=based_on,
                    variables_confirmed=confirmed,
                    imported_from_workflow=imported_from_workflow,
                )
        except IntegrityError:
            if attempt:
                raise
            logger.info("prompt version number taken for workflow %s; retrying", workflow.pk)
    raise AssertionError("unreachable")  # pragma: no cover


def prompt_latest_version(workflow: Workflow) -> PromptVersion | None:
    """ "Latest": the newest version whose variables are confirmed."""
    return (
        PromptVersion.objects.filter(workflow=workflow, variables_confirmed=True)
        .order_by("-number")
        .first()
    )


def prompt_version_confirm(*, version: PromptVersion) -> PromptVersion:
    """An editor confirms a version's unknown variables: from now on it may be "Latest"."""
    if not version.variables_confirmed:
        version.variables_confirmed = True
        version.save(update_fields=["variables_confirmed"])
    return version


# --- Labels -------------------------------------------------------------------------------------


def prompt_label_name_clean(name: str) -> str:
    """A label name as stored: a lower-case slug; `latest` is refused (it is derived)."""
    cleaned = slugify((name or "").strip()).lower()
    if not cleaned:
        raise PromptLabelInvalid("A label needs a name (letters, digits, - or _).")
    if cleaned == LATEST:
        raise PromptLabelInvalid("'latest' is always the newest version; it cannot be set.")
    if len(cleaned) > 50:
        raise PromptLabelInvalid("A label name has at most 50 characters.")
    return cleaned


class PromotionRefused(PromptError):
    """A protected label cannot move: not enough evidence (the message says what is missing),
    or an override without a reason or without the permission. `.evidence` is what was found."""

    def __init__(self, message: str, *, evidence=None):
        super().__init__(message)
        self.evidence = evidence


def prompt_label_move(
    *,
    workflow: Workflow,
    name: str,
    version: PromptVersion,
    user,
    reason: str = "",
    evidence_batch=None,
    evidence_canary=None,
    without_evidence: bool = False,
) -> PromptLabel:
    """Point the label `name` of `workflow` at `version` (creating it), recording the move.

    The one place a label moves (the prompts page, the admin and `move_prompt_label` call it).
    - Moving (or creating) `production` or any protected label needs
      `launcher.move_production_label`, else `PermissionDenied`.
    - A protected label (`production` is created protected) moves only on evidence
      (`launcher.services.promotion`): `evidence_batch` / `evidence_canary` name it, else the
      newest finished batch that qualifies is used. Without evidence it raises
      `PromotionRefused`, unless `without_evidence` is asked by a user with
      `launcher.promote_without_evidence` who wrote a `reason`.
    - The move records who, when, from → to, why, and the evidence (batch or canary, and a
      snapshot of the numbers). A running canary of the label ends with it.
    Pointing a label where it already points changes and records nothing.
    """
    from launcher.services import canary as canary_service

    name = prompt_label_name_clean(name)
    reason = (reason or "").strip()[:500]
    with transaction.atomic():
        label = PromptLabel.objects.select_for_update().filter(workflow=workflow, name=name).first()
        if label is not None and label.version_id == version.pk:
            return label
        evidence, overridden = prompt_label_move_check(
            workflow=workflow,
            label=label,
            name=name,
            version=version,
            user=user,
            reason=reason,
            evidence_batch=evidence_batch,
            evidence_canary=evidence_canary,
            without_evidence=without_evidence,
        )
        protected = label.protected if label is not None else name == PromptLabel.PRODUCTION
        if label is None:
            label = PromptLabel.objects.create(
                workflow=workflow, name=name, version=version, protected=protected
            )
            from_version = None
        else:
            from_version = label.version
            label.version = version
            label.save(update_fields=["version", "updated_at"])
        PromptLabelMove.objects.create(
            label=label,
            from_version=from_version,
            to_version=version,
            moved_by=user,
            reason=reason,
            evidence_batch=evidence.batch if evidence else None,
            evidence_canary=evidence.canary if evidence else None,
            evidence=evidence.snapshot() if evidence else None,
            without_evidence=overridden,
        )
        canary_service.canary_end_on_move(label=label, user=user)
    logger.info(
        "label %s of workflow %s moved to v%s by %s%s",
        name,
        workflow.pk,
        version.number,
        getattr(user, "pk", None),
        " without evidence" if overridden else "",
    )
    return label


def prompt_label_move_check(
    *,
    workflow: Workflow,
    label: PromptLabel | None,
    name: str,
    version: PromptVersion,
    user,
    reason: str = "",
    evidence_batch=None,
    evidence_canary=None,
    without_evidence: bool = False,
):
    """Everything `prompt_label_move` checks before moving, without moving: raises
    `PromptLabelInvalid`, `PermissionDenied` or `PromotionRefused`; returns (evidence or None
    for an unprotected label, whether the move is an override). Forms call it to show the
    refusal next to the field; the move calls it again under the label's row lock."""
    from launcher.services.promotion import promotion_evidence

    name = prompt_label_name_clean(name)
    reason = (reason or "").strip()
    if version.workflow_id != workflow.pk:
        raise PromptLabelInvalid("A label can only point at a version of its own workflow.")
    protected = label.protected if label is not None else name == PromptLabel.PRODUCTION
    if (name == PromptLabel.PRODUCTION or protected) and not (
        user and user.has_perm(MOVE_PRODUCTION_LABEL)
    ):
        raise PermissionDenied(f"Moving the {name} label needs its own permission.")
    if not protected:
        return None, False
    evidence = promotion_evidence(
        workflow=workflow,
        label=name,
        candidate=version,
        current=label.version if label is not None else None,
        batch=evidence_batch,
        canary=evidence_canary,
    )
    if evidence.ok:
        return evidence, False
    if not without_evidence:
        raise PromotionRefused(
            f"{name} cannot move to v{version.number} yet: {evidence.message}", evidence=evidence
        )
    if not (user and user.has_perm(PROMOTE_WITHOUT_EVIDENCE)):
        raise PromotionRefused(
            "Promoting without evidence needs the “may promote without evidence” permission.",
            evidence=evidence,
        )
    if not reason:
        raise PromotionRefused(
            "Write why it moves without evidence: the reason is kept in the history.",
            evidence=evidence,
        )
    return evidence, True


def prompt_label_set_protected(*, label: PromptLabel, protected: bool, user) -> PromptLabel:
    """Protect a label (needs `move_production_label`) or lift its protection (needs
    `promote_without_evidence` too: unprotected, it would move with no evidence at all)."""
    if not (user and user.has_perm(MOVE_PRODUCTION_LABEL)):
        raise PermissionDenied("Protecting labels needs the permission to move production.")
    if not protected and not user.has_perm(PROMOTE_WITHOUT_EVIDENCE):
        raise PermissionDenied(
            "Lifting a label's protection needs the “may promote without evidence” permission."
        )
    PromptLabel.objects.filter(pk=label.pk).update(protected=protected)
    label.protected = protected
    return label


# --- Choosing and resolving a run's prompt ------------------------------------------------------


@dataclass(frozen=True)
class PromptChoice:
    """What an operator chose: the encoded `value` is what forms and URLs carry.

    "stored", "latest", "label:<name>", "version:<id>".
    """

    mode: str
    label: str = ""
    version_id: int | None = None

    @property
    def value(self) -> str:
        if self.mode == PromptMode.LABEL:
            return f"label:{self.label}"
        if self.mode == PromptMode.PINNED:
            return f"version:{self.version_id}"
        return str(self.mode)


def prompt_choice_parse(value: str) -> PromptChoice:
    """Decode a prompt choice string; raise PromptChoiceInvalid for anything else."""
    value = (value or "").strip()
    if "\x00" in value:
        # No label holds one, and PostgreSQL refuses to even look one up.
        raise PromptChoiceInvalid(f"Unknown prompt choice {value!r}.")
    if value in (PromptMode.STORED, PromptMode.LATEST):
        return PromptChoice(mode=PromptMode(value))
    kind, _, rest = value.partition(":")
    if kind == "label" and rest:
        if rest == LATEST:
            return PromptChoice(mode=PromptMode.LATEST)
        return PromptChoice(mode=PromptMode.LABEL, label=rest)
    version_id = id_parse(rest) if kind == "version" else None
    if version_id is not None:
        return PromptChoice(mode=PromptMode.PINNED, version_id=version_id)
    raise PromptChoiceInvalid(f"Unknown prompt choice {value!r}.")


@dataclass(frozen=True)
class ResolvedPrompt:
    """A prompt choice resolved to concrete text at launch.

    `text` is None for the stored prompt: send no `main_prompt`, the API uses the workflow's.
    `sha256` is the hash of the text the run is expected to use (for `stored`, of the
    workflow's prompt as last mirrored).
    """

    mode: str
    label: str
    version: PromptVersion | None
    text: str | None
    sha256: str
    # Set when the label resolved had a running canary (launcher.services.canary.canary_route).
    canary_id: int | None = None
    canary_arm: str = ""

    @property
    def choice(self) -> PromptChoice:
        return PromptChoice(
            mode=self.mode,
            label=self.label,
            version_id=self.version.pk if self.version and self.mode == PromptMode.PINNED else None,
        )

    @property
    def description(self) -> str:
        """e.g. "Workflow's stored prompt", "latest (v3)", "production (v2)", "v2"."""
        if self.version is None:
            return str(PromptMode.STORED.label)
        if self.mode == PromptMode.LATEST:
            return f"latest (v{self.version.number})"
        if self.mode == PromptMode.LABEL:
            return f"{self.label} (v{self.version.number})"
        return f"v{self.version.number}"

    def run_fields(self) -> dict:
        """The Run columns that record this choice."""
        return {
            "prompt_mode": str(self.mode),
            "prompt_label": self.label,
            "prompt_version": self.version,
            "prompt_sha256": self.sha256,
            "canary_id": self.canary_id,
            "canary_arm": self.canary_arm,
        }


def prompt_resolve(
    *,
    workflow: Workflow,
    mode: str,
    label: str | None = None,
    version_id: int | None = None,
    routing_key=None,
) -> ResolvedPrompt:
    """Resolve a prompt choice for `workflow` to one concrete version (or the stored prompt).

    With `routing_key` (the run's idempotency key), a label with a running canary sends the
    canary's share of keys to its candidate (`canary.canary_route`). Without it (previews, the
    picker) the label's own version is returned.

    Raises PromptChoiceInvalid when the label or version does not exist, belongs to another
    workflow, or `latest` is asked of a workflow without versions.
    """
    if mode == PromptMode.STORED:
        return ResolvedPrompt(
            mode=PromptMode.STORED,
            label="",
            version=None,
            text=None,
            sha256=sha256_text(workflow.main_prompt or ""),
        )
    if mode == PromptMode.LABEL and label == LATEST:
        mode = PromptMode.LATEST
    if mode == PromptMode.LATEST:
        version = prompt_latest_version(workflow)
        if version is None:
            raise PromptChoiceInvalid(f"{workflow} has no prompt versions yet.")
        return _resolved(PromptMode.LATEST, "", version)
    if mode == PromptMode.LABEL:
        found = (
            PromptLabel.objects.select_related("version")
            .filter(workflow=workflow, name=label or "")
            .first()
        )
        if found is None:
            raise PromptChoiceInvalid(f"{workflow} has no prompt label {label!r}.")
        resolved = _resolved(PromptMode.LABEL, found.name, found.version)
        if routing_key is not None and found.protected:
            from launcher.services.canary import canary_route

            resolved = canary_route(resolved, routing_key=routing_key)
        return resolved
    if mode == PromptMode.PINNED:
        version = PromptVersion.objects.filter(workflow=workflow, pk=version_id).first()
        if version is None:
            raise PromptChoiceInvalid(f"That prompt version does not belong to {workflow}.")
        return _resolved(PromptMode.PINNED, "", version)
    raise PromptChoiceInvalid(f"Unknown prompt mode {mode!r}.")


def _resolved(mode: str, label: str, version: PromptVersion) -> ResolvedPrompt:
    return ResolvedPrompt(
        mode=mode, label=label, version=version, text=version.text, sha256=version.sha256
    )


def prompt_resolve_choice(*, workflow: Workflow, choice: str) -> ResolvedPrompt:
    """`prompt_resolve` for an encoded choice string ("stored", "label:production", …)."""
    parsed = prompt_choice_parse(choice)
    return prompt_resolve(
        workflow=workflow, mode=parsed.mode, label=parsed.label, version_id=parsed.version_id
    )


# --- The workflow's stored prompt ---------------------------------------------------------------


def prompt_import_stored(*, workflow: Workflow, user) -> tuple[PromptVersion, bool]:
    """Save the workflow's stored prompt (fetched fresh from the API) as a new version.

    Returns (version, created): when the newest version already has exactly that text, it is
    returned and nothing is saved. API errors propagate (nothing is imported from a stale
    mirror without the editor knowing).
    """

    workflow = workflow_refresh(workflow)
    newest = PromptVersion.objects.filter(workflow=workflow).order_by("-number").first()
    if newest is not None and newest.sha256 == sha256_text(workflow.main_prompt):
        return newest, False
    version = prompt_version_create(
        workflow=workflow,
        text=workflow.main_prompt,
        note="Imported from the workflow's stored prompt",
        author=user,
        # Nobody has looked at its variables yet: not "Latest" until an editor confirms them.
        confirm_unknown_variables=False,
        imported_from_workflow=True,
    )
    return version, True


def prompt_stored_record(*, workflow: Workflow) -> PromptVersion | None:
    """The version holding exactly the workflow's stored prompt as mirrored now — the text a
    run launched with the stored prompt is recorded with. A version with the same hash is
    reused (whoever wrote it); otherwise one is saved, marked imported from the workflow. It
    becomes the newest version, as an editor's import would. None for an empty prompt.
    """
    text = workflow.main_prompt or ""
    if not text.strip():
        return None
    found = (
        PromptVersion.objects.filter(workflow=workflow, sha256=sha256_text(text))
        .order_by("number")
        .first()
    )
    if found is not None:
        return found
    return prompt_version_create(
        workflow=workflow,
        text=text,
        note="Imported from the workflow's stored prompt at launch",
        imported_from_workflow=True,
    )


def prompt_publish(*, version: PromptVersion, user) -> Workflow:
    """Make `version` the workflow's stored prompt upstream (PATCH main_prompt).

    This changes what every run launched without a prompt override uses, here and in any other
    client of the API — hence its own permission and a confirmation step in the admin.
    """

    if not (user and user.has_perm(PUBLISH_PROMPT)):
        raise PermissionDenied("Publishing a prompt to the workflow needs its own permission.")
    upstream = get_client().update_workflow(version.workflow_id, main_prompt=version.text)
    logger.info(
        "prompt v%s of workflow %s published by %s",
        version.number,
        version.workflow_id,
        getattr(user, "pk", None),
    )
    return workflow_store(upstream)
