"""Launching runs and acting on them: launch, submit, cancel, retry, launch again.

The launch order is the heart of "one click, one run" (STYLE habit 10):

1. the run is stored locally — workflow, model, the prompt choice resolved to one concrete
   version and its hash, the non-sensitive inputs, who launched it — under the form's one-time
   token as its idempotency key, and that transaction is committed;
2. only then is the API called, with that key.

A double click or a resubmitted form carries the same token: it finds the stored run (the key is
unique) and never calls the API a second time. If the process dies between 1 and 2, or the API's
answer is lost, the run stays `queued`/`unknown` and the reconciler re-sends it with the same
key, which the API applies at most once.

The shared workflow is never patched to launch a run: model and prompt travel as per-run
overrides (`main_agent_model_id`, `main_prompt`), so concurrent runs cannot race on it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from launcher.cyberdesk import errors, get_client, quick_reads, types
from launcher.models import (
    ModelOption,
    PromptLabel,
    PromptMode,
    Run,
    RunAttempt,
    RunEvent,
    RunStatus,
    Submission,
    Workflow,
    sha256_text,
)
from launcher.parsing import url_is_safe
from launcher.services.api_status import api_outage
from launcher.services.prompts import (
    PromptChoice,
    PromptChoiceInvalid,
    prompt_choice_parse,
    prompt_resolve,
    prompt_stored_record,
)
from launcher.services.run_events import run_event_record
from launcher.services.run_sync import run_apply_upstream, run_attachments_fetch, run_finalize

logger = logging.getLogger(__name__)

MODEL_NOT_OFFERED = "That model is no longer offered; choose another."


class LaunchFailed(Exception):
    """The run was not started. Nothing runs upstream.

    `message` says what happened and whether trying again is safe; `field` names the form
    field at fault (or ""); `api_error` is the API's `InvalidRequest` when it refused the
    values. `run` is the stored run, now `rejected` (kept for the record), or None when the
    launch was refused before anything was stored.
    """

    def __init__(
        self,
        message: str,
        *,
        safe_to_retry: bool,
        run: Run | None = None,
        field: str = "",
        api_error: errors.InvalidRequest | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.safe_to_retry = safe_to_retry
        self.run = run
        self.field = field
        self.api_error = api_error


class RunActionFailed(Exception):
    """A cancel or retry that could not be done; the message is safe to show. `api_error` is
    the API's failure behind it, when there was one (a batch's worker waits out a 429)."""

    def __init__(self, message: str, *, api_error: errors.CyberdeskError | None = None):
        super().__init__(message)
        self.api_error = api_error


# --- Launch ------------------------------------------------------------------------------------


def run_launch(
    *,
    user,
    workflow: Workflow,
    model_option: ModelOption | None,
    prompt_choice: str | PromptChoice,
    input_values: Mapping[str, Any],
    sensitive_input_values: Mapping[str, Any] | None = None,
    file_inputs: Iterable[types.FileInput] | None = None,
    idempotency_key: uuid.UUID | str,
    is_priority: bool = False,
    file_input_fields: Mapping[str, str] | None = None,
) -> Run:
    """Store a run, commit, then send it (see the module docstring for why in that order).

    Returns the run: `accepted`, or `unknown` when the API's answer was lost (it will be
    settled by the reconciler; it must not be launched again). A token that was already used
    returns that earlier run without calling the API.

    Raises `LaunchFailed` when nothing was started: the model is no longer offered or the
    prompt choice no longer exists (nothing stored), or the API refused the run or could not
    be reached (the run is kept as `rejected`).

    `sensitive_input_values` are keyed without their `$` and are never stored or logged; of
    `file_inputs` only the names are stored, with the input field each one was for when
    `file_input_fields` (field → file name) says so.
    """
    idempotency_key = uuid.UUID(str(idempotency_key))
    existing = Run.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        logger.info("Run %s: launch form submitted again; not sending twice", existing.pk)
        return existing

    if model_option is not None and not model_option.is_offered:
        raise LaunchFailed(MODEL_NOT_OFFERED, safe_to_retry=True, field="model")
    choice = (
        prompt_choice
        if isinstance(prompt_choice, PromptChoice)
        else _parse_choice(str(prompt_choice))
    )
    try:
        resolved = prompt_resolve(
            workflow=workflow,
            mode=choice.mode,
            label=choice.label,
            version_id=choice.version_id,
            routing_key=idempotency_key,  # a canary on the label picks this run's arm from it
        )
    except PromptChoiceInvalid as exc:
        raise LaunchFailed(str(exc), safe_to_retry=True, field="prompt") from None

    files = list(file_inputs or [])
    sensitive = dict(sensitive_input_values or {})
    prompt_fields = resolved.run_fields()
    if resolved.mode == PromptMode.STORED:
        # Nothing is sent (the API uses the workflow's own prompt), but the text Launcher saw is
        # recorded as a version, so "Launch again → same prompt" can send exactly that text.
        prompt_fields["prompt_version"] = prompt_stored_record(workflow=workflow)
    try:
        with transaction.atomic():
            run = Run.objects.create(
                idempotency_key=idempotency_key,
                workflow=workflow,
                model_option=model_option,
                **prompt_fields,
                input_values=dict(input_values),
                sensitive_input_keys=sorted(sensitive),
                file_input_names=[file.filename for file in files],
                file_input_fields=[
                    {"field": str(key), "filename": str(name)}
                    for key, name in (file_input_fields or {}).items()
                ],
                is_priority=is_priority,
                launched_by=user if getattr(user, "is_authenticated", False) else None,
                submission=Submission.QUEUED,
                status=RunStatus.PENDING,
            )
            version = prompt_fields["prompt_version"]
            run_event_record(
                run=run,
                kind=RunEvent.Kind.LAUNCHED,
                source=RunEvent.Source.USER,
                actor=user,
                detail={
                    "model": model_option.name if model_option else "Workflow default",
                    "model_id": str(model_option.pk) if model_option else None,
                    "prompt": resolved.description,
                    "prompt_version": version.number if version else None,
                    "prompt_sha256": resolved.sha256,
                },
            )
    except IntegrityError:
        # The same form, submitted twice at the same moment: the other request stored it.
        return Run.objects.get(idempotency_key=idempotency_key)
    logger.info(
        "Run %s stored: workflow %s, model %s, prompt %s",
        run.pk,
        workflow.pk,
        model_option.pk if model_option else "workflow default",
        resolved.description,
    )

    run, failure = _submit(run, sensitive_input_values=sensitive, file_inputs=files)
    if failure is not None:
        raise failure
    return run


def _parse_choice(value: str) -> PromptChoice:
    try:
        return prompt_choice_parse(value)
    except PromptChoiceInvalid as exc:
        raise LaunchFailed(str(exc), safe_to_retry=True, field="prompt") from None


def run_request(run: Run) -> dict[str, Any]:
    """The `create_run` arguments a stored run stands for (secrets and files excepted).

    "Workflow default" sends no `main_agent_model_id`; "workflow's stored prompt" sends no
    `main_prompt` — the API then uses the workflow's own at execution time.
    """
    send_prompt = run.prompt_mode != PromptMode.STORED and run.prompt_version_id is not None
    return {
        "workflow_id": run.workflow_id,
        "main_agent_model_id": run.model_option_id,
        "main_prompt": run.prompt_version.text if send_prompt else None,
        "input_values": dict(run.input_values) if run.input_values else None,
        "is_priority": run.is_priority,
    }


def run_submit(
    run: Run,
    *,
    sensitive_input_values: Mapping[str, Any] | None = None,
    file_inputs: Iterable[types.FileInput] | None = None,
) -> Run:
    """Send a stored run with its own idempotency key and record the outcome on it:

    - `accepted` (with its upstream id and status) when the API returns the run — also when
      this is a re-send of a run the API already had (it replays the first answer);
    - `rejected` when the API refused it or was never reached (nothing runs upstream);
    - `unknown` when the request may have arrived but no usable answer came back.

    Never raises for API errors (the launch, batches and the reconciler read `run.submission`).
    Used by `run_launch`, batch submission and the reconciler.
    """
    run, _ = _submit(run, sensitive_input_values=sensitive_input_values, file_inputs=file_inputs)
    return run


def _submit(
    run: Run,
    *,
    sensitive_input_values: Mapping[str, Any] | None,
    file_inputs: Iterable[types.FileInput] | None,
) -> tuple[Run, LaunchFailed | None]:
    if run.submission == Submission.ACCEPTED:
        return run, None
    Run.objects.filter(pk=run.pk).update(submission_attempts=F("submission_attempts") + 1)
    try:
        upstream = get_client().create_run(
            idempotency_key=str(run.idempotency_key),
            sensitive_input_values=dict(sensitive_input_values or {}) or None,
            file_inputs=list(file_inputs or []) or None,
            **run_request(run),
        )
    except errors.InvalidRequest as exc:
        message = (
            f"{exc} Nothing was started; correct the values and launch again."
            if exc.field_errors or exc.messages
            else f"{exc} Nothing was started."
        )
        return run, _reject(run, message, safe_to_retry=False, api_error=exc)
    except errors.NotSent as exc:
        return run, _reject(
            run, f"{exc} Nothing was sent; it is safe to try again.", safe_to_retry=True
        )
    except errors.RateLimited as exc:
        return run, _reject(
            run, f"{exc} Nothing was started; it is safe to try again.", safe_to_retry=True
        )
    except errors.AuthError as exc:
        return run, _reject(
            run,
            f"{exc} Nothing was started; trying again will not help until the key is fixed.",
            safe_to_retry=False,
        )
    except errors.NotFound as exc:
        return run, _reject(
            run,
            f"{exc} Cyberdesk does not know this workflow (any more); nothing was started.",
            safe_to_retry=False,
        )
    except errors.CyberdeskError as exc:
        # OutcomeUnknown, a 5xx, an unreadable answer: the API may have created the run. Keep
        # it as `unknown`; the reconciler settles it with the same key. Never send it again
        # from here with a new key.
        with transaction.atomic():
            updated = Run.objects.filter(
                pk=run.pk, submission__in=[Submission.QUEUED, Submission.UNKNOWN]
            ).update(submission=Submission.UNKNOWN, submission_error=str(exc)[:2000])
            if updated:
                run.submission = Submission.UNKNOWN
                run.submission_error = str(exc)[:2000]
                run_event_record(
                    run=run,
                    kind=RunEvent.Kind.OUTCOME_UNKNOWN,
                    source=RunEvent.Source.LAUNCHER,
                    detail={"message": str(exc)[:500]},
                )
        logger.warning("Run %s: launch outcome unknown: %s", run.pk, exc)
        return run, None

    run_apply_upstream(run, upstream, source=RunEvent.Source.LAUNCHER)
    logger.info("Run %s accepted as %s", run.pk, upstream.id)
    return run, None


def _reject(
    run: Run,
    message: str,
    *,
    safe_to_retry: bool,
    api_error: errors.InvalidRequest | None = None,
) -> LaunchFailed:
    """Mark a run the API refused (or never got) as rejected; it is kept for the record."""
    message = message[:2000]
    with transaction.atomic():
        updated = (
            Run.objects.filter(pk=run.pk)
            .exclude(submission=Submission.ACCEPTED)
            .update(
                submission=Submission.REJECTED, status=RunStatus.REJECTED, submission_error=message
            )
        )
        if updated:
            run.submission = Submission.REJECTED
            run.status = RunStatus.REJECTED
            run.submission_error = message
            run_event_record(
                run=run,
                kind=RunEvent.Kind.REJECTED,
                source=RunEvent.Source.LAUNCHER,
                detail={"message": message[:500]},
            )
    logger.warning("Run %s rejected: %s", run.pk, message)
    return LaunchFailed(message, safe_to_retry=safe_to_retry, run=run, api_error=api_error)


# --- Cancel and retry --------------------------------------------------------------------------


def run_cancel(*, run: Run, user) -> Run:
    """Cancel an unfinished run, safe whichever way the real API settles a race.

    The docs do not say what `PATCH {"status": "cancelled"}` does to a run that has just
    finished: it might overwrite `success` with `cancelled`. So the run is read first, and a
    run that has already finished upstream is never PATCHed (its result is recorded instead;
    `run.status` then is not `cancelled`, and the caller says so). Whatever the answer, a
    terminal status Launcher already holds stays (`run_apply_upstream` moves forward only), and
    an answer that does not fit — the run still working after the cancel, or "cancelled" for a
    run that had finished — is recorded on the run (`Run.api_notes`) and shown on its page.
    """
    if run.is_finished:
        raise RunActionFailed("This run has already finished.")
    if run.cyberdesk_id is None:
        raise RunActionFailed(
            "Cyberdesk has not confirmed this run yet, so it cannot be cancelled yet. "
            "Try again in a moment."
        )
    client = get_client()
    try:
        current = client.get_run(run.cyberdesk_id)
    except errors.CyberdeskError as exc:
        raise RunActionFailed(f"The run was not cancelled: {exc}", api_error=exc) from None
    if current.status in _UPSTREAM_TERMINAL:
        run_apply_upstream(run, current)
        logger.info("Run %s: had finished (%s) before the cancel", run.pk, current.status)
        return run
    try:
        upstream = client.cancel_run(run.cyberdesk_id)
    except errors.CyberdeskError as exc:
        raise RunActionFailed(f"The run was not cancelled: {exc}", api_error=exc) from None
    with transaction.atomic():
        run_event_record(
            run=run, kind=RunEvent.Kind.CANCEL_REQUESTED, source=RunEvent.Source.USER, actor=user
        )
        run_apply_upstream(run, upstream, source=RunEvent.Source.USER)
    if upstream.status not in _UPSTREAM_TERMINAL:
        run_note_unexpected(
            run,
            action="cancel",
            message=(
                f"Cyberdesk accepted the cancel but still reports the run as {upstream.status!r}: "
                "its agent may keep working. Launcher will keep checking it."
            ),
        )
    elif upstream.status == RunStatus.CANCELLED and run.status != RunStatus.CANCELLED:
        run_note_unexpected(
            run,
            action="cancel",
            message=(
                f"Cyberdesk answered the cancel with 'cancelled' for a run that had already "
                f"finished as {run.status!r}; Launcher keeps {run.status!r}."
            ),
        )
    logger.info("Run %s: cancel requested by %s", run.pk, getattr(user, "pk", None))
    return run


API_NOTES_KEPT = 20


def run_note_unexpected(run: Run, *, action: str, message: str) -> None:
    """Record (and log) an API answer Launcher did not expect; the newest `API_NOTES_KEPT` stay."""
    logger.warning("Run %s: unexpected API answer to %s: %s", run.pk, action, message)
    note = {"at": timezone.now().isoformat(), "action": action, "message": message}
    with transaction.atomic():
        locked = Run.objects.select_for_update().only("pk", "api_notes").get(pk=run.pk)
        notes = [*(locked.api_notes or []), note][-API_NOTES_KEPT:]
        Run.objects.filter(pk=run.pk).update(api_notes=notes)
    run.api_notes = notes


def run_retry(*, run: Run, user) -> Run:
    """Retry a finished run in place: the API keeps its id, its prompt, model and inputs.

    The API clears a run's outputs when it retries it, so the finished attempt is kept first
    (`RunAttempt`: status, times, outputs, errors, checks, usage, message history, cost and the
    attachment list), under the row lock that also bumps `attempt` — a compare-and-set, so two
    clicks on Retry give one retry and one kept attempt. What the finished attempt still lacks
    (its message history, its cost) is fetched before it is kept. The new attempt's state then
    replaces the finished one on the run (`run_apply_upstream(restart=True)`, the only way a
    run's status may move backwards). If the API refuses the retry, the attempt number goes
    back and the copy is dropped (the run still holds that attempt). Sensitive values are not
    re-sent: the API deleted them after the first attempt.
    """
    if not run.is_finished:
        raise RunActionFailed("Only a finished run can be retried.")
    if run.cyberdesk_id is None:
        raise RunActionFailed(
            "Cyberdesk never started this run, so there is nothing to retry: use Launch again."
        )
    attempt = run.attempt
    run_finalize(run)  # API errors tolerated: the attempt is kept with what is known
    attachments, attachments_error = run_attachments(run)
    with transaction.atomic():
        locked = Run.objects.select_for_update().filter(pk=run.pk, attempt=attempt).first()
        if locked is None or not locked.is_finished:
            raise RunActionFailed("This run is already being retried.")
        run_attempt_keep(run=locked, attachments=None if attachments_error else attachments)
        Run.objects.filter(pk=run.pk).update(attempt=attempt + 1)
    run.attempt = attempt + 1
    client = get_client()
    try:
        upstream = client.retry_run(
            run.cyberdesk_id, idempotency_key=f"retry-{run.idempotency_key}-{run.attempt}"
        )
    except errors.OutcomeUnknown as exc:
        upstream = _look_for_restart(client, run)
        if upstream is None:
            raise RunActionFailed(
                f"{exc} Reload the page in a moment to see whether the retry started."
            ) from None
    except errors.CyberdeskError as exc:
        with transaction.atomic():
            if Run.objects.filter(pk=run.pk, attempt=run.attempt).update(attempt=attempt):
                RunAttempt.objects.filter(run_id=run.pk, number=attempt).delete()
        run.attempt = attempt
        raise RunActionFailed(f"The run was not retried: {exc}", api_error=exc) from None
    with transaction.atomic():
        run_event_record(
            run=run,
            kind=RunEvent.Kind.RETRIED,
            source=RunEvent.Source.USER,
            actor=user,
            detail={"previous_attempt": attempt},
        )
        run_apply_upstream(run, upstream, restart=True, source=RunEvent.Source.USER)
    logger.info("Run %s: retry %s requested by %s", run.pk, run.attempt, getattr(user, "pk", None))
    return run


def run_attempt_keep(*, run: Run, attachments: list[types.Attachment] | None) -> RunAttempt:
    """Copy the run's current, finished attempt into `RunAttempt` (call under the run's lock).

    A copy already kept for that number is returned unchanged: a kept attempt never changes.
    """
    existing = RunAttempt.objects.filter(run_id=run.pk, number=run.attempt).first()
    if existing is not None:
        return existing
    return RunAttempt.objects.create(
        run_id=run.pk,
        number=run.attempt,
        status=run.status,
        started_at=run.started_at,
        ended_at=run.ended_at,
        output_data=run.output_data,
        errors=list(run.errors or []),
        post_run_checks=list(run.post_run_checks or []),
        usage_metadata=run.usage_metadata,
        message_history=run.message_history,
        cost_usd=run.cost_usd,
        attachments=None
        if attachments is None
        else [
            {
                "id": str(item.id),
                "filename": item.filename,
                "content_type": item.content_type,
                "attachment_type": item.attachment_type,
                "size_bytes": item.size_bytes,
            }
            for item in attachments
        ],
    )


def _look_for_restart(client, run: Run) -> types.Run | None:
    try:
        upstream = client.get_run(run.cyberdesk_id)
    except errors.CyberdeskError:
        return None
    return upstream if upstream.status not in _UPSTREAM_TERMINAL else None


_UPSTREAM_TERMINAL = {"success", "task_failed", "error", "cancelled"}


# --- Attachments -------------------------------------------------------------------------------


class UnsafeDownloadUrl(Exception):
    """The API's download link is not one a browser should be sent to; the message is safe to
    show."""


def run_attachments(run: Run, *, fetch: bool = True) -> tuple[list[types.Attachment], str]:
    """A finished run's attachments and an error message ("" when fine).

    Read from `Run.attachments`, stored once per finished attempt (by the worker when the run
    finishes: `run_sync.run_finalize`). A run whose attachments are not stored yet is fetched
    here (one quick attempt, nothing while an API outage is noted) and stored, unless
    `fetch=False`, which answers ([], "") at once: the run page loads them after itself.
    """
    if run.cyberdesk_id is None or not run.is_finished:
        return [], ""
    if run.attachments is None and fetch:
        outage = api_outage()
        if outage is not None:
            return [], f"The attachments are unavailable: {outage.message}."
        with quick_reads():
            run_attachments_fetch(run)
        if run.attachments is None:
            outage = api_outage()
            reason = outage.message if outage else "Cyberdesk did not list them"
            return [], f"The attachments are unavailable: {reason}."
    return [types.Attachment.from_api(item) for item in run.attachments or []], ""


def run_attachment_download_url(*, run: Run, attachment_id: uuid.UUID) -> str | None:
    """A short-lived download URL for one of the run's attachments; None when the attachment
    is not this run's. API errors propagate."""
    attachments, error = run_attachments(run)
    if error:
        raise RunActionFailed(error)
    if not any(attachment.id == attachment_id for attachment in attachments):
        return None
    url = get_client().get_attachment_download_url(attachment_id)
    # The browser is sent wherever this URL points: only https (or http to the local sandbox,
    # which serves plain http) — never javascript:, data: or anything else the API might send.
    sandbox = settings.CYBERDESK_BASE_URL if settings.CYBERDESK_USING_SANDBOX else None
    if not url_is_safe(url, http_origin=sandbox):
        logger.warning("Run %s: the API sent a download link that is not https; refused", run.pk)
        raise UnsafeDownloadUrl(
            "Cyberdesk sent a download link that is not a secure (https) address, so it was not "
            "followed."
        )
    return url


# --- Launch again ------------------------------------------------------------------------------

SAME = "same"
PRODUCTION = "production"


@dataclass
class LaunchAgain:
    """How the launch form is prefilled from an earlier run."""

    run: Run
    prompt_from: str  # SAME or PRODUCTION
    initial: dict[str, Any]  # workflow, model, prompt
    input_values: dict[str, Any]
    same_choice: str
    same_description: str
    production_choice: str | None
    production_description: str | None
    notes: list[str] = field(default_factory=list)


def run_launch_again(run: Run, *, prompt_from: str = SAME) -> LaunchAgain:
    """The launch form's starting point for "Launch again": the same workflow, model, prompt
    choice and non-sensitive inputs. The prompt is either the very version the run used
    ("same version vN") or whatever `production` points at now ("current production (vK)").
    """
    notes = []
    if run.prompt_version is None:
        # Launched before Launcher recorded the stored prompt's text: only "stored" is possible.
        same_choice, same_description = "stored", "same prompt (the workflow's stored prompt)"
    elif run.prompt_mode == PromptMode.STORED:
        # The exact text the run was launched with, pinned: the workflow's stored prompt may
        # have been changed (published, edited upstream) since.
        version = run.prompt_version
        same_choice = f"version:{run.prompt_version_id}"
        same_description = (
            f"same prompt (the workflow's stored prompt at launch, recorded as v{version.number})"
        )
        if sha256_text(run.workflow.main_prompt or "") != version.sha256:
            notes.append(
                "The workflow's stored prompt has changed since this run; the text this run "
                f"used is pinned (v{version.number})."
            )
    else:
        same_choice = f"version:{run.prompt_version_id}"
        same_description = f"same version v{run.prompt_version.number}"

    production = (
        PromptLabel.objects.select_related("version")
        .filter(workflow_id=run.workflow_id, name=PromptLabel.PRODUCTION)
        .first()
    )
    production_choice = f"label:{PromptLabel.PRODUCTION}" if production else None
    production_description = (
        f"current production (v{production.version.number})" if production else None
    )
    if prompt_from != PRODUCTION or production_choice is None:
        prompt_from = SAME

    model = ""
    if run.model_option_id is not None:
        if run.model_option.is_offered:
            model = str(run.model_option_id)
        else:
            notes.append(
                f"The model {run.model_option.name} ({run.model_option_id}) is no longer "
                "offered, so the same model cannot be used; the workflow default is selected "
                "instead."
            )
    if run.sensitive_input_keys:
        keys = ", ".join(f"${key}" for key in run.sensitive_input_keys)
        notes.append(f"Sensitive inputs are never kept: type {keys} again.")
    if run.file_input_names:
        notes.append("Files are not kept: attach " + ", ".join(run.file_input_names) + " again.")

    return LaunchAgain(
        run=run,
        prompt_from=prompt_from,
        initial={
            "workflow": str(run.workflow_id),
            "model": model,
            "prompt": production_choice if prompt_from == PRODUCTION else same_choice,
        },
        input_values=dict(run.input_values or {}),
        same_choice=same_choice,
        same_description=same_description,
        production_choice=production_choice,
        production_description=production_description,
        notes=notes,
    )


# --- The launch page's catalog -----------------------------------------------------------------


def launch_catalog_refresh() -> str:
    """Bring the workflow mirror and the model catalog up to date when they are stale (one API
    call each at most); return "" or a message saying Cyberdesk could not be reached.

    An empty mirror is synced straight away so its error can be shown; a stale one is synced
    quietly (on failure the last mirror stays in use).
    """
    from launcher.services.catalog import models_sync_if_stale
    from launcher.services.workflows import workflows_sync, workflows_sync_if_stale

    message = ""
    if Workflow.objects.exists():
        workflows_sync_if_stale()
    else:
        try:
            workflows_sync()
        except errors.CyberdeskError as exc:
            message = f"Cyberdesk is unreachable: {exc}"
    models_sync_if_stale()
    return message
