"""Test data for the launch form, the launch service and the run pages (the fake API they talk
to is tests/fake_cyberdesk.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.utils import timezone

from launcher.models import (
    Batch,
    ModelOption,
    PromptLabel,
    PromptVersion,
    Run,
    RunStatus,
    Submission,
    Workflow,
)
from tests.fake_cyberdesk import FakeCyberdesk

# The moment time-controlled tests stand at (the `clock` fixture in tests/conftest.py).
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

SCHEMA = {
    "type": "object",
    "required": ["customer_id", "age"],
    "properties": {
        "customer_id": {"type": "string", "description": "The customer's id.", "minLength": 3},
        "age": {"type": "integer", "minimum": 18, "maximum": 120},
        "notify": {"type": "boolean", "default": True},
        "region": {"type": "string", "enum": ["eu", "us"], "default": "eu"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "$api_key": {"type": "string", "minLength": 4},
    },
}
STORED_PROMPT = "Stored: look up {customer_id}."
V1_TEXT = "v1: look up {customer_id} aged {age}."
V2_TEXT = "v2: look up {customer_id} in {region}, ticket {ticket}. Key {$api_key}."
VALID_POST = {
    "input:customer_id": "c-100",
    "input:age": "42",
    "input:notify": "on",
    "input:region": "us",
    "input:tags": "vip\nnew",
    "input:$api_key": "s3cret-key",
}


def make_workflow(**extra) -> Workflow:
    values = {
        "name": "Invoice intake",
        "main_prompt": STORED_PROMPT,
        "input_schema": SCHEMA,
        "tags": ["finance", "daily"],
        "synced_at": timezone.now(),
    }
    values.update(extra)
    return Workflow.objects.create(id=extra.pop("id", uuid.uuid4()), **values)


def make_model(name: str, **extra) -> ModelOption:
    values = {
        "name": name,
        "provider": "anthropic",
        "model": name.lower().replace(" ", "-"),
        "is_computer_use": True,
        "synced_at": timezone.now(),
    }
    values.update(extra)
    return ModelOption.objects.create(id=uuid.uuid4(), **values)


class Catalog:
    """A workflow with two prompt versions (production → v1), an offered and a disabled model."""

    def __init__(self):
        self.workflow = make_workflow()
        self.v1 = PromptVersion.objects.create(workflow=self.workflow, number=1, text=V1_TEXT)
        self.v2 = PromptVersion.objects.create(workflow=self.workflow, number=2, text=V2_TEXT)
        self.production = PromptLabel.objects.create(
            workflow=self.workflow, name="production", version=self.v1
        )
        self.model = make_model("Claude Sonnet")
        self.disabled_model = make_model("Old Model", enabled=False)


def make_run(
    workflow, *, status=RunStatus.RUNNING, api: FakeCyberdesk | None = None, **fields
) -> Run:
    """A run Launcher launched and the API accepted (with `api`: its upstream twin)."""
    cyberdesk_id = fields.pop("cyberdesk_id", uuid.uuid4())
    fields.setdefault("prompt_mode", "stored")
    fields.setdefault("submission", Submission.ACCEPTED)
    run = Run.objects.create(workflow=workflow, cyberdesk_id=cyberdesk_id, status=status, **fields)
    if api is not None:
        api.add_run(
            run_id=cyberdesk_id,
            workflow_id=workflow.pk,
            status=status,
            created_at=datetime.now(tz=UTC),
        )
    return run


def make_batch(
    workflow, *, name="March", state=Batch.State.SUBMITTING, queued=0, **by_status
) -> Batch:
    """A batch with `queued` runs not yet sent (pending, queued) and, per status named,
    that many runs the API accepted (`make_run`), each inserted on its own so the kept
    counters count it."""
    batch = Batch.objects.create(workflow=workflow, name=name, state=state)
    for _ in range(queued):
        Run.objects.create(
            workflow=workflow,
            batch=batch,
            prompt_mode="stored",
            status=RunStatus.PENDING,
            submission=Submission.QUEUED,
        )
    for status, count in by_status.items():
        for _ in range(count):
            make_run(workflow, status=status, batch=batch)
    return batch
