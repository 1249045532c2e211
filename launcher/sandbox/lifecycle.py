"""How a sandbox run moves through time.

Nothing runs in the background to move a run: at creation each run gets a *plan* (how long each
phase lasts and how it ends, drawn from a RNG seeded with the run id and attempt, so a run's fate
is fixed and reproducible). Whenever a run is read, listed or the driver ticks, `run_advance`
applies every transition whose planned moment has passed, stamping each with its planned time.
Time comes from `launcher.sandbox.clock.now` (`django.utils.timezone.now` unless a test holds
it), so tests move it with time-machine or a held clock instead of sleeping.

    scheduling → running → [running_checks] → success | task_failed | error
    any active status → cancelled (PATCH)
"""

import hashlib
import json
import random
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from launcher.sandbox import clock, screens, webhooks
from launcher.sandbox.models import (
    ACTIVE_STATUSES,
    AttachmentType,
    ModelConfiguration,
    Run,
    RunAttachment,
    RunStatus,
    Scenario,
    Workflow,
)
from launcher.sandbox.payloads import iso


@dataclass(frozen=True)
class Timing:
    scheduling: float
    running: float
    checks: float


# Seconds per phase (before SANDBOX_TIME_SCALE and a ±20% jitter): short enough that a demo is
# lively, long enough to watch the statuses change.
SCENARIO_TIMINGS = {
    Scenario.QUICK: Timing(scheduling=2, running=4, checks=3),
    Scenario.SLOW: Timing(scheduling=3, running=20, checks=5),
    Scenario.FLAKY: Timing(scheduling=2, running=6, checks=3),
    Scenario.FAILING_CHECK: Timing(scheduling=2, running=5, checks=3),
}
JITTER = 0.2

# Three pretend machines that "pick up" runs.
SANDBOX_MACHINE_IDS = (
    uuid.UUID("5a4db0c5-0000-4000-8000-00000000bee1"),
    uuid.UUID("5a4db0c5-0000-4000-8000-00000000bee2"),
    uuid.UUID("5a4db0c5-0000-4000-8000-00000000bee3"),
)
SANDBOX_POOL_ID = uuid.UUID("5a4db0c5-0000-4000-8000-00000000b001")

_INPUT_VARIABLE = re.compile(r"(?<![\\{])\{([A-Za-z_][\w.\[\]]*)\}(?!\})")


def time_scale() -> float:
    return float(getattr(settings, "SANDBOX_TIME_SCALE", 1.0))


# A prompt may say how often the sandbox should fail it ("[sandbox failure_rate=0.8]"), so a
# demo or a test can show a worse prompt version losing to a better one (batches, canaries).
_PROMPT_FAILURE_RATE = re.compile(r"\[sandbox failure_rate=(0(?:\.\d+)?|1(?:\.0+)?)\]")


def prompt_failure_rate(prompt: str | None) -> float | None:
    match = _PROMPT_FAILURE_RATE.search(prompt or "")
    return float(match.group(1)) if match else None


def run_plan(
    workflow: Workflow, *, run_id: uuid.UUID, attempt: int, prompt: str | None = None
) -> dict:
    """Durations and outcome of one attempt, fixed at creation (or retry). `prompt`, the text
    the run uses, may override the workflow's failure rate (see `prompt_failure_rate`)."""
    rng = random.Random(f"{run_id}:{attempt}")  # noqa: S311 - a simulation, not security
    timing = SCENARIO_TIMINGS.get(workflow.scenario, SCENARIO_TIMINGS[Scenario.QUICK])
    scale = time_scale()

    def seconds(base: float) -> float:
        return round(base * scale * rng.uniform(1 - JITTER, 1 + JITTER), 3)

    outcome = RunStatus.SUCCESS
    failure = None
    failure_rate = prompt_failure_rate(prompt)
    if failure_rate is None:
        failure_rate = workflow.failure_rate
    if rng.random() < failure_rate:
        # A flaky workflow mostly breaks on infrastructure, sometimes the agent gives up.
        outcome = RunStatus.ERROR if rng.random() < 0.7 else RunStatus.TASK_FAILED
        failure = rng.choice(_FAILURES[outcome])
    elif workflow.scenario == Scenario.FAILING_CHECK:
        outcome = RunStatus.TASK_FAILED
        failure = "post_run_check"
    steps = rng.randint(3, 6)
    return {
        "scheduling_seconds": seconds(timing.scheduling),
        "running_seconds": seconds(timing.running),
        "checks_seconds": seconds(timing.checks),
        "outcome": outcome,
        "failure": failure,
        "steps": steps,
        "cached_steps": rng.randint(0, steps // 2),
        "input_tokens_per_step": rng.randint(2800, 4200),
        "output_tokens_per_step": rng.randint(120, 320),
        "machine_id": str(rng.choice(SANDBOX_MACHINE_IDS)),
    }


_FAILURES = {
    RunStatus.ERROR: [
        "Machine connection lost while the agent was typing (simulated flaky scenario)",
        "Remote desktop session timed out (simulated flaky scenario)",
    ],
    RunStatus.TASK_FAILED: [
        "The agent declared the task failed: the record could not be found on screen",
        "The agent declared the task failed: the application showed an unexpected dialog",
    ],
}


def run_clock_start(run: Run, *, now: datetime) -> None:
    """(Re)start a run's plan at `now`: it enters `scheduling` (not saved)."""
    prompt = run.main_prompt if run.main_prompt is not None else run.workflow.main_prompt
    run.plan = run_plan(run.workflow, run_id=run.id, attempt=run.attempt, prompt=prompt)
    run.plan_started_at = now
    run.status = RunStatus.SCHEDULING
    run.next_transition_at = now + timedelta(seconds=run.plan["scheduling_seconds"])


def run_advance(run: Run, *, now: datetime) -> bool:
    """Apply every transition due by `now` (not saved). True when anything changed.

    The caller holds the row lock (see `run_refresh`), so two readers never apply a
    transition twice."""
    changed = False
    while _is_due(run, now):
        at = run.next_transition_at
        if run.status == RunStatus.SCHEDULING:
            _enter_running(run, at)
        elif run.status == RunStatus.RUNNING:
            if run.plan["outcome"] != RunStatus.SUCCESS and run.plan["failure"] != "post_run_check":
                _finish(run, at, run.plan["outcome"])
            elif run.post_run_checks:
                _enter_checks(run, at)
            else:
                _finish(run, at, run.plan["outcome"])
        else:  # running_checks
            _finish(run, at, run.plan["outcome"])
        changed = True
    return changed


def run_refresh(run_id: uuid.UUID) -> Run | None:
    """The run, advanced to now (saved when it moved). None if it does not exist."""
    now = clock.now()
    run = Run.objects.select_related("workflow").filter(pk=run_id).first()
    if run is None or not _is_due(run, now):
        return run  # most reads: nothing to apply, no lock taken
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("workflow").get(pk=run_id)
        if run_advance(run, now=now):
            run.save()
    return run


def _is_due(run: Run, now: datetime) -> bool:
    return (
        run.status in ACTIVE_STATUSES
        and run.next_transition_at is not None
        and run.next_transition_at <= now
    )


def runs_advance_due(*, now: datetime | None = None) -> int:
    """Advance every active run with a transition due; returns how many moved."""
    now = now or clock.now()
    due = list(
        Run.objects.filter(status__in=ACTIVE_STATUSES, next_transition_at__lte=now)
        .order_by("next_transition_at")
        .values_list("pk", flat=True)
    )
    moved = 0
    for run_id in due:
        with transaction.atomic():
            run = Run.objects.select_for_update().select_related("workflow").get(pk=run_id)
            if run_advance(run, now=now):
                run.save()
                moved += 1
    return moved


def run_cancel(run: Run, *, now: datetime) -> bool:
    """Cancel an active run (not saved). A finished run is left as it is: False."""
    run_advance(run, now=now)
    if run.status not in ACTIVE_STATUSES:
        return False
    _finish(run, now, RunStatus.CANCELLED)
    return True


def next_transition_due() -> datetime | None:
    return (
        Run.objects.filter(status__in=ACTIVE_STATUSES, next_transition_at__isnull=False)
        .order_by("next_transition_at")
        .values_list("next_transition_at", flat=True)
        .first()
    )


# --- Effective prompt and model -----------------------------------------------------------------


def effective_model(run: Run) -> ModelConfiguration | None:
    """Run override, else the workflow's main agent, else the system default."""
    for metadata in (run.model_metadata, run.workflow.model_metadata):
        model_id = (metadata or {}).get("main_agent_model_id")
        if model_id:
            found = ModelConfiguration.objects.filter(pk=model_id).first()
            if found:
                return found
    return ModelConfiguration.objects.filter(is_system_default=True).first()


def render_prompt(template: str, input_values: dict | None) -> str:
    """Fill `{name}` / `{a.b}` / `{a[0]}` from the inputs; `{$secret}` stays a placeholder
    (sensitive values are typed on the machine, never shown to a model or stored)."""
    values = input_values or {}

    def lookup(match: re.Match) -> str:
        current = values
        for part in re.findall(r"[^.\[\]]+", match.group(1)):
            if isinstance(current, dict) and part in current:
                current = current[part]
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                return match.group(0)
        return current if isinstance(current, str) else json.dumps(current)

    return _INPUT_VARIABLE.sub(lookup, template)


# --- Transitions ----------------------------------------------------------------------------------


def _enter_running(run: Run, at: datetime) -> None:
    run.status = RunStatus.RUNNING
    run.started_at = at
    if run.machine_id is None:
        run.machine_id = uuid.UUID(run.plan["machine_id"])
    # The workflow's prompt is read now, "at execution time", unless the run overrides it.
    prompt = run.main_prompt if run.main_prompt is not None else run.workflow.main_prompt
    model = effective_model(run)
    run.plan = {
        **run.plan,
        "prompt_source": "run_override" if run.main_prompt is not None else "workflow",
        "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
        "prompt_first_line": prompt.strip().splitlines()[0] if prompt.strip() else "",
        "model_id": str(model.id) if model else None,
        "model": model.model if model else None,
        "provider": model.provider if model else None,
    }
    run.run_message_history = [
        _message("user", [_text(render_prompt(prompt, run.input_values))]),
        _message(
            "assistant",
            [
                _text("I'll start by taking a screenshot to see the current state of the screen."),
                _tool_use(run, 0, {"action": "screenshot"}),
            ],
        ),
    ]
    run.next_transition_at = at + timedelta(seconds=run.plan["running_seconds"])


def _enter_checks(run: Run, at: datetime) -> None:
    run.status = RunStatus.RUNNING_CHECKS
    run.post_run_checks = [
        {**check, "status": "running", "started_at": _iso(at)} for check in run.post_run_checks
    ]
    run.next_transition_at = at + timedelta(seconds=run.plan["checks_seconds"])


def _finish(run: Run, at: datetime, status: str) -> None:
    plan = run.plan
    was_running = run.started_at is not None
    run.status = status
    run.ended_at = at
    run.next_transition_at = None
    run.post_run_checks = _final_checks(run, at, status)

    if status == RunStatus.CANCELLED:
        run.error = ["Run was cancelled"]
        done_fraction = _fraction_done(run, at) if was_running else 0.0
        steps = int(plan.get("steps", 0) * done_fraction)
    else:
        steps = plan["steps"]
        run.error = _errors_for(run, status)
    if was_running:
        run.run_message_history = _history(run, status, steps)
        run.usage_metadata = _usage(run, status, steps)
        run.llm_cost_rows = _cost_rows(run, steps)
    if status != RunStatus.CANCELLED and was_running:
        run.output_data = _output(run, status)
        if status == RunStatus.SUCCESS and run.workflow.includes_file_exports:
            run.output_attachment_ids = [str(_export_attachment(run, at).id)]
    webhooks.webhook_event_create(run, occurred_at=at)


def _fraction_done(run: Run, at: datetime) -> float:
    if run.status == RunStatus.RUNNING_CHECKS or run.started_at is None:
        return 1.0
    elapsed = (at - run.started_at).total_seconds()
    return max(0.0, min(1.0, elapsed / max(run.plan["running_seconds"], 0.001)))


def _final_checks(run: Run, at: datetime, status: str) -> list:
    checks = []
    for index, check in enumerate(run.post_run_checks):
        if check.get("status") not in ("pending", "running"):
            checks.append(check)
            continue
        if status == RunStatus.CANCELLED or check.get("status") == "pending":
            # Checks that never started: cancelled with the run, or skipped after a failure.
            checks.append({**check, "status": "cancelled", "ended_at": _iso(at)})
            continue
        failed = run.plan.get("failure") == "post_run_check" and index == 0
        checks.append(
            {
                **check,
                "status": "failed" if failed else "success",
                "ended_at": _iso(at),
                "error_message": _check_failure_message(check) if failed else None,
                # list[str], as the SDK's RunPostRunCheckSnapshot.messages (2.2.69).
                "messages": [
                    "The output does not satisfy the check."
                    if failed
                    else "The output satisfies the check."
                ],
            }
        )
    return checks


def _check_failure_message(check: dict) -> str:
    return f"Post-run check '{check.get('name')}' failed: no confirmation number in the output"


def _errors_for(run: Run, status: str) -> list[str] | None:
    if status == RunStatus.SUCCESS:
        return None
    if run.plan.get("failure") == "post_run_check":
        first = run.post_run_checks[0] if run.post_run_checks else {"name": "post-run check"}
        return [_check_failure_message(first)]
    return [run.plan.get("failure") or "The run failed"]


def _output(run: Run, status: str) -> dict:
    plan = run.plan
    sensitive_names = set(run.sensitive_input_aliases or {})
    output = {
        "summary": {
            RunStatus.SUCCESS: f"Completed the workflow in {plan['steps']} steps (sandbox)",
            RunStatus.TASK_FAILED: "The agent could not complete the task (sandbox)",
            RunStatus.ERROR: "The run stopped on an infrastructure error (sandbox)",
        }[status],
        "effective_model_id": plan.get("model_id"),
        "effective_model": plan.get("model"),
        "prompt_source": plan.get("prompt_source"),
        "prompt_sha256": plan.get("prompt_sha256"),
        "prompt_first_line": plan.get("prompt_first_line"),
        # Non-sensitive inputs only; sensitive ones are never stored in the first place.
        "inputs": {
            key: value
            for key, value in (run.input_values or {}).items()
            if key not in sensitive_names
        },
    }
    if status == RunStatus.SUCCESS:
        output["confirmation_number"] = f"SBX-{int(run.id.hex[:8], 16) % 1_000_000:06d}"
    return output


def _usage(run: Run, status: str, steps: int) -> dict:
    plan = run.plan
    cached = min(plan.get("cached_steps", 0), steps)
    billed = status in (RunStatus.SUCCESS, RunStatus.TASK_FAILED)
    return {
        "total_agentic_steps": steps - cached,
        "total_cached_steps": cached,
        "agentic_steps_billed": steps - cached if billed else 0,
        "cached_steps_billed": cached if billed else 0,
        "billing_outcome": "billed" if billed else "not_billed",
        "main_agent_model_id": plan.get("model_id"),
        "main_agent_model": plan.get("model"),
        "input_tokens": (steps - cached) * plan.get("input_tokens_per_step", 0),
        "output_tokens": (steps - cached) * plan.get("output_tokens_per_step", 0),
    }


_ENDPOINT_TYPES = {"anthropic": "messages", "openai": "responses", "google": "generate_content"}


def _cost_rows(run: Run, steps: int) -> list[dict]:
    plan = run.plan
    model = ModelConfiguration.objects.filter(pk=plan.get("model_id")).first()
    agentic_steps = steps - min(plan.get("cached_steps", 0), steps)
    if model is None or agentic_steps <= 0:
        return []
    rows = [
        _cost_row(
            model,
            role="main_agent",
            calls=agentic_steps,
            input_tokens=agentic_steps * plan["input_tokens_per_step"],
            output_tokens=agentic_steps * plan["output_tokens_per_step"],
        )
    ]
    if any(check.get("status") in ("success", "failed") for check in run.post_run_checks):
        rows.append(
            _cost_row(model, role="post_run_check", calls=1, input_tokens=1800, output_tokens=90)
        )
    return rows


def _cost_row(
    model: ModelConfiguration, *, role: str, calls: int, input_tokens: int, output_tokens: int
) -> dict:
    # After the first call, most of each request (the system prompt and earlier turns) is
    # served from the provider's prompt cache.
    cache_read = int(input_tokens * 0.6) if calls > 1 else 0
    cache_write = int(input_tokens * 0.1) if calls > 1 else 0
    uncached = input_tokens - cache_read - cache_write
    cost = None
    if model.input_usd_per_mtok is not None and model.output_usd_per_mtok is not None:
        cost = round(
            (
                uncached * model.input_usd_per_mtok
                + cache_read * model.input_usd_per_mtok * 0.1
                + cache_write * model.input_usd_per_mtok * 1.25
                + output_tokens * model.output_usd_per_mtok
            )
            / 1_000_000,
            6,
        )
    return {
        "role": role,
        "billing_platform": model.provider,
        "model": model.model,
        "endpoint_type": _ENDPOINT_TYPES.get(model.provider, "chat_completions"),
        "source": "sandbox",
        "call_count": calls,
        "input_tokens": input_tokens,
        "uncached_input_tokens": uncached,
        "cache_read_tokens": cache_read,
        "cache_write_5m_tokens": cache_write,
        "cache_write_1h_tokens": 0,
        "output_tokens": output_tokens,
        "reasoning_tokens": 0,
        "cost_usd": cost,
    }


def llm_costs(run: Run) -> dict:
    rows = run.llm_cost_rows or []
    priced = [row["cost_usd"] for row in rows if row["cost_usd"] is not None]
    has_unpriced = any(row["cost_usd"] is None for row in rows)
    return {
        "run_id": str(run.id),
        "has_unpriced": has_unpriced,
        "rows": rows,
        "total_cost_usd": round(sum(priced), 6) if priced or not rows else None,
    }


# What the pretend agent does, in order (Anthropic's computer-use `computer` tool actions), and
# what it says before each one.
_ACTIONS = (
    (
        "I can see the application. I'll click the search field first.",
        {"action": "left_click", "coordinate": [420, 330]},
    ),
    ("Now I'll type the value from the inputs.", {"action": "type", "text": None}),
    ("Pressing Return to submit the search.", {"action": "key", "text": "Return"}),
    (
        "The results continue below the fold; scrolling down.",
        {
            "action": "scroll",
            "coordinate": [640, 420],
            "scroll_direction": "down",
            "scroll_amount": 3,
        },
    ),
    ("That's the matching record. Opening it.", {"action": "left_click", "coordinate": [710, 465]}),
    ("Let me take a screenshot to check the form was saved.", {"action": "screenshot"}),
)


def _history(run: Run, status: str, steps: int) -> list[dict]:
    """A computer-use conversation in Anthropic's message shape: the prompt, then for each step
    the tool result of the previous action (a small PNG screenshot) and the agent's next move."""
    history = list(run.run_message_history or [])[:2]
    typed = _first_text_input(run)
    pointer = None
    for step in range(1, max(steps, 1)):
        history.append(
            _message(
                "user",
                [_tool_result(run, step - 1, _screenshot_block(run, step - 1, pointer))],
            )
        )
        narration, action = _ACTIONS[(step - 1) % len(_ACTIONS)]
        action = dict(action)
        if action.get("action") == "type":
            action["text"] = typed
        if "coordinate" in action and action["action"] != "scroll":
            pointer = tuple(action["coordinate"])
        history.append(_message("assistant", [_text(narration), _tool_use(run, step, action)]))
    closing = {
        RunStatus.SUCCESS: [_text("The task is complete: the record is updated and saved.")],
        RunStatus.TASK_FAILED: [
            _text("I cannot finish this task."),
            _tool_use(
                run, steps, {"reason": (run.error or ["failed"])[0]}, name="declare_task_failed"
            ),
        ],
        RunStatus.ERROR: [_text("(The session ended unexpectedly.)")],
        RunStatus.CANCELLED: [_text("(Cancelled.)")],
    }[status]
    if steps > 1:
        history.append(
            _message("user", [_tool_result(run, steps - 1, _screenshot_block(run, steps, pointer))])
        )
    history.append(_message("assistant", closing))
    return history


def _first_text_input(run: Run) -> str:
    sensitive = set(run.sensitive_input_aliases or {})
    for key, value in (run.input_values or {}).items():
        if key not in sensitive and isinstance(value, str) and value:
            return value
    return "sandbox"


def _screenshot_block(run: Run, step: int, pointer) -> dict:
    return {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": screens.screenshot_base64(
                seed=f"{run.id}:{run.attempt}", step=step, pointer=pointer
            ),
        },
    }


def _message(role: str, content: list[dict]) -> dict:
    return {"role": role, "content": content}


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _tool_use(run: Run, step: int, tool_input: dict, name: str = "computer") -> dict:
    return {
        "type": "tool_use",
        "id": f"toolu_{run.id.hex[:12]}_{run.attempt}_{step}",
        "name": name,
        "input": tool_input,
    }


def _tool_result(run: Run, step: int, *content: dict) -> dict:
    return {
        "type": "tool_result",
        "tool_use_id": f"toolu_{run.id.hex[:12]}_{run.attempt}_{step}",
        "content": list(content),
    }


def _export_attachment(run: Run, at: datetime) -> RunAttachment:
    rows = ["field,value"] + [
        f"{key},{json.dumps(value)}"
        for key, value in (run.output_data or {}).get("inputs", {}).items()
    ]
    content = ("\n".join(rows) + "\n").encode()
    return RunAttachment.objects.create(
        run=run,
        filename="export.csv",
        content_type="text/csv",
        attachment_type=AttachmentType.OUTPUT,
        content=content,
        size_bytes=len(content),
        created_at=at,
        expires_at=at + timedelta(days=30),
    )


def _iso(value: datetime) -> str | None:
    return iso(value)
