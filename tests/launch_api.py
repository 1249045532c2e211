"""Test data and a fake Cyberdesk for the launch form, the launch service and the run page.

`LaunchApi` is an `httpx.MockTransport` handler: it records every request (so tests can assert
the exact body sent), answers run creates (replaying the first answer for a repeated
Idempotency-Key, as the API does), run reads, cancels, retries and attachments, and can be told
to fail a create in each way the API can fail.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
from django.utils import timezone

from launcher.cyberdesk import use_transport
from launcher.models import (
    ModelOption,
    PromptLabel,
    PromptVersion,
    Run,
    RunStatus,
    Submission,
    Workflow,
)

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


def upstream_run(run_id=None, *, workflow_id, status="scheduling", **fields) -> dict:
    return {
        "id": str(run_id or uuid.uuid4()),
        "workflow_id": str(workflow_id),
        "machine_id": None,
        "status": status,
        "created_at": datetime.now(tz=UTC).isoformat(),
        "started_at": None,
        "ended_at": None,
        "main_prompt": None,
        "model_metadata": None,
        "input_values": {},
        "output_data": None,
        "error": [],
        "post_run_checks": [],
        "usage_metadata": None,
        "sensitive_input_aliases": None,
        "input_attachment_ids": [],
        "output_attachment_ids": [],
        "run_message_history": None,
        **fields,
    }


class LaunchApi:
    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.runs: dict[str, dict] = {}
        self.by_key: dict[str, dict] = {}
        self.attachments: list[dict] = []
        # How creates fail: an httpx exception to raise or an httpx.Response to send; every
        # time, or only `create_failures_left` times.
        self.create_failure: Exception | httpx.Response | None = None
        self.create_failures_left: int | None = None

    # --- what was asked --------------------------------------------------------------------

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(path)]

    @property
    def creates(self) -> list[httpx.Request]:
        return self.calls("POST", "/v1/runs")

    def create_body(self, index: int = -1) -> dict:
        return json.loads(self.creates[index].content)

    # --- answers ---------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.split("/v1/", 1)[-1]
        parts = path.strip("/").split("/")
        if request.method == "POST" and path == "runs":
            return self._create(request)
        if parts[0] == "runs" and len(parts) >= 2:
            run = self.runs.get(parts[1])
            if run is None:
                return httpx.Response(404, json={"detail": "Run not found"})
            if request.method == "GET" and len(parts) == 2:
                return httpx.Response(200, json=run)
            if request.method == "PATCH" and len(parts) == 2:
                run.update(json.loads(request.content))
                run["ended_at"] = datetime.now(tz=UTC).isoformat()
                return httpx.Response(200, json=run)
            if request.method == "POST" and parts[2:] == ["retry"]:
                if run["status"] not in ("success", "task_failed", "error", "cancelled"):
                    return httpx.Response(409, json={"detail": "Run is still active"})
                run.update(status="scheduling", output_data=None, ended_at=None, error=[])
                return httpx.Response(200, json=run)
            if request.method == "GET" and parts[2:] == ["llm-costs"]:
                return httpx.Response(
                    200,
                    json={
                        "run_id": parts[1],
                        "has_unpriced": False,
                        "rows": [],
                        "total_cost_usd": 0.0123,
                    },
                )
        if parts[0] == "run-attachments":
            if len(parts) == 1:
                items = [a for a in self.attachments if a["run_id"] == request.url.params["run_id"]]
                return httpx.Response(
                    200, json={"items": items, "total": len(items), "skip": 0, "limit": 100}
                )
            if parts[2:] == ["download-url"]:
                return httpx.Response(
                    200, json={"url": f"https://files.test/{parts[1]}?sig=abc", "expires_in": 300}
                )
        return httpx.Response(404, json={"detail": f"no route {request.method} {path}"})

    def _create(self, request: httpx.Request) -> httpx.Response:
        failure = self.create_failure
        if failure is not None and self.create_failures_left is not None:
            self.create_failures_left -= 1
            if self.create_failures_left <= 0:
                self.create_failure = None
        if isinstance(failure, Exception):
            raise failure
        if isinstance(failure, httpx.Response):
            return failure
        key = request.headers.get("Idempotency-Key")
        if key in self.by_key:
            return httpx.Response(201, json=self.by_key[key])
        body = json.loads(request.content)
        metadata = None
        if body.get("main_agent_model_id"):
            metadata = {"main_agent_model_id": body["main_agent_model_id"]}
        run = upstream_run(
            workflow_id=body["workflow_id"],
            main_prompt=body.get("main_prompt"),
            model_metadata=metadata,
            input_values=body.get("input_values") or {},
            sensitive_input_aliases=(
                {k: f"alias_{k}" for k in body["sensitive_input_values"]}
                if body.get("sensitive_input_values")
                else None
            ),
        )
        self.runs[run["id"]] = run
        self.by_key[key] = run
        return httpx.Response(201, json=run)

    def add_run(self, **fields) -> dict:
        run = upstream_run(**fields)
        self.runs[run["id"]] = run
        return run


@contextmanager
def serve(settings):
    """Route the shared client through a fresh LaunchApi: `with serve(settings) as api`."""
    settings.CYBERDESK_BASE_URL = "https://cyberdesk.test"
    settings.CYBERDESK_API_KEY = "sk_test"
    fake = LaunchApi()
    with use_transport(httpx.MockTransport(fake)):
        yield fake


def make_run(workflow, *, status=RunStatus.RUNNING, api: LaunchApi | None = None, **fields) -> Run:
    """A run Launcher launched and the API accepted (with `api`: its upstream twin)."""
    cyberdesk_id = fields.pop("cyberdesk_id", uuid.uuid4())
    fields.setdefault("prompt_mode", "stored")
    fields.setdefault("submission", Submission.ACCEPTED)
    run = Run.objects.create(workflow=workflow, cyberdesk_id=cyberdesk_id, status=status, **fields)
    if api is not None:
        api.add_run(run_id=cyberdesk_id, workflow_id=workflow.pk, status=status)
    return run
