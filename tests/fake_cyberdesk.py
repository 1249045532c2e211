"""The one in-memory Cyberdesk API of the tests, served through `httpx.MockTransport` (the client
under test is the real one).

`FakeCyberdesk` records every request (thread-safe) and answers:
- runs: create (replaying the first answer for a repeated Idempotency-Key with the very same body,
  as the API does; the same key with a body that differs in any byte is refused with 422, as the
  sandbox and the API's docs do — the fake is stricter than the sandbox, which compares parsed
  JSON, so what passes here passes any reading of "the same request"),
  list (filters, `fields`, paging), read, cancel (PATCH), retry and LLM costs;
- run attachments: list and download URL;
- workflows (list, read, PATCH) and model configurations.

What was asked: `requests` (every request), `calls` (a count per route, e.g.
`calls["GET /v1/runs"]`, and callable: `calls("PATCH", "/v1/runs/<id>")` lists the matching
requests), `creates`, `create_body()` and `patches()`.

How it fails, when told to:
- `fail_with`: answer every request with this status;
- `on_request(request)`: called with each request; may raise, or return the response to send;
- `create_failure`: an httpx exception to raise or an httpx.Response to send for creates, every
  time or only `create_failures_left` times (nothing is created);
- `lose_create_answers`: create the run, then time out this many answers.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx

from launcher.cyberdesk import use_transport
from tests.cyberdesk import payloads

# The keys a run list always returns, whatever `fields` asks for.
BASE_KEYS = ("id", "workflow_id", "machine_id", "status", "created_at")
FINISHED = ("success", "task_failed", "error", "cancelled")
# The sandbox's answer (launcher/sandbox/idempotency.py) to a key re-used with another body.
KEY_REUSED = {
    "detail": [
        {
            "loc": ["header", "Idempotency-Key"],
            "msg": "This Idempotency-Key was already used with a different request; "
            "use a new key for a new request",
            "type": "idempotency_key_reused",
        }
    ]
}


def upstream_run(run_id=None, *, workflow_id=None, status="running", **fields) -> dict:
    """A run as the API returns it, freshly created unless `fields` say otherwise."""
    created = fields.pop("created_at", datetime(2025, 3, 1, 11, 55, tzinfo=UTC))
    return {
        "id": str(run_id or uuid.uuid4()),
        "workflow_id": str(workflow_id or uuid.uuid4()),
        "machine_id": None,
        "status": status,
        "created_at": created.isoformat(),
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
        "run_message_history": [],
        **fields,
    }


class CallLog(Counter):
    """Requests counted per route name; calling it lists the requests to one path."""

    def __init__(self, requests: list[httpx.Request]):
        super().__init__()
        self.requests = requests

    def __call__(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path.endswith(path)]


def route_name(method: str, route: str) -> str:
    if route.startswith("runs/") and route.endswith("/llm-costs"):
        return "GET llm-costs"
    return f"{method} /v1/" + re.sub(r"^(\w[\w-]*)/[^/]+", r"\1/{id}", route)


class FakeCyberdesk:
    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.costs: dict[str, float | None] = {}
        self.attachments: list[dict] = []
        self.workflows: dict[str, dict] = {}
        self.models: list[dict] = []
        self.created_by_key: dict[str, dict] = {}
        self.body_by_key: dict[str, bytes] = {}
        self.requests: list[httpx.Request] = []
        self.calls = CallLog(self.requests)
        self.fail_with: int | None = None
        self.on_request = None
        self.create_failure: Exception | httpx.Response | None = None
        self.create_failures_left: int | None = None
        self.lose_create_answers = 0
        self.lock = threading.Lock()

    # --- test data ---------------------------------------------------------------------------

    def add(self, run: dict) -> dict:
        self.runs[run["id"]] = run
        return run

    def add_run(self, **fields) -> dict:
        return self.add(upstream_run(**fields))

    def add_model(self, **fields) -> dict:
        model = payloads.model_configuration(**fields)
        self.models.append(model)
        return model

    def add_workflow(self, **fields) -> dict:
        workflow = payloads.workflow(**fields)
        self.workflows[workflow["id"]] = workflow
        return workflow

    # --- what was asked ----------------------------------------------------------------------

    @property
    def creates(self) -> list[httpx.Request]:
        return self.calls("POST", "/v1/runs")

    def create_body(self, index: int = -1) -> dict:
        return json.loads(self.creates[index].content)

    def patches(self) -> list[dict]:
        """The bodies of the workflow PATCHes."""
        return [json.loads(r.content) for r in self.requests if "/v1/workflows/" in r.url.path]

    # --- answers -----------------------------------------------------------------------------

    def serve(self):
        """Route the shared client through this fake for the duration of a `with` block."""
        return use_transport(httpx.MockTransport(self))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.split("/v1/", 1)[-1].strip("/")
        with self.lock:
            self.requests.append(request)
            self.calls[route_name(request.method, route)] += 1
        if self.on_request and (answer := self.on_request(request)) is not None:
            return answer
        if self.fail_with:
            return httpx.Response(self.fail_with, json={"detail": "down for maintenance"})
        parts = route.split("/")
        method = request.method
        if parts[0] == "runs":
            return self._runs(request, method, parts[1:])
        if parts[0] == "run-attachments":
            return self._attachments(request, parts[1:])
        if parts[0] == "workflows":
            return self._workflows(request, method, parts[1:])
        if method == "GET" and parts == ["model-configurations"]:
            return httpx.Response(200, json=self.models)
        return httpx.Response(404, json={"detail": f"not faked: {method} {route}"})

    def _runs(self, request, method, parts) -> httpx.Response:
        if not parts:
            if method == "GET":
                return self._list(request)
            if method == "POST":
                return self._create(request)
        elif method == "GET" and parts[1:] == ["llm-costs"]:
            cost = self.costs.get(parts[0])
            return httpx.Response(
                200, json=payloads.llm_costs(run_id=parts[0], rows=[], total_cost_usd=cost)
            )
        elif (run := self.runs.get(parts[0])) is None:
            return httpx.Response(404, json={"detail": "Run not found"})
        elif method == "GET" and len(parts) == 1:
            return httpx.Response(200, json=run)
        elif method == "PATCH" and len(parts) == 1:
            run.update(json.loads(request.content))
            run["ended_at"] = datetime.now(tz=UTC).isoformat()
            return httpx.Response(200, json=run)
        elif method == "POST" and parts[1:] == ["retry"]:
            if run["status"] not in FINISHED:
                return httpx.Response(409, json={"detail": "Run is still active"})
            run.update(status="scheduling", output_data=None, ended_at=None, error=[])
            return httpx.Response(200, json=run)
        return httpx.Response(404, json={"detail": "Not found"})

    def _list(self, request) -> httpx.Response:
        params = request.url.params
        items = list(self.runs.values())
        if workflow_id := params.get("workflow_id"):
            items = [run for run in items if run["workflow_id"] == workflow_id]
        if since := params.get("created_at_from"):
            since = datetime.fromisoformat(since)
            items = [r for r in items if datetime.fromisoformat(r["created_at"]) >= since]
        if until := params.get("created_at_to"):
            until = datetime.fromisoformat(until)
            items = [r for r in items if datetime.fromisoformat(r["created_at"]) <= until]
        items.sort(key=lambda r: r["created_at"], reverse=True)
        if fields := params.get_list("fields"):
            items = [{k: v for k, v in r.items() if k in BASE_KEYS or k in fields} for r in items]
        return self._page(request, items)

    def _create(self, request) -> httpx.Response:
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
        if key in self.created_by_key:
            if request.content != self.body_by_key[key]:
                return httpx.Response(422, json=KEY_REUSED)
            return httpx.Response(201, json=self.created_by_key[key])  # the original answer
        body = json.loads(request.content)
        model_id = body.get("main_agent_model_id")
        secrets = body.get("sensitive_input_values")
        run = self.add_run(
            workflow_id=body["workflow_id"],
            status="scheduling",
            created_at=datetime.now(tz=UTC),
            main_prompt=body.get("main_prompt"),
            model_metadata={"main_agent_model_id": model_id} if model_id else None,
            input_values=body.get("input_values") or {},
            sensitive_input_aliases={k: f"alias_{k}" for k in secrets} if secrets else None,
        )
        if key:
            self.created_by_key[key] = run
            self.body_by_key[key] = request.content
        if self.lose_create_answers:
            self.lose_create_answers -= 1
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(201, json=run)

    def _attachments(self, request, parts) -> httpx.Response:
        if not parts:
            run_id = request.url.params["run_id"]
            return self._page(request, [a for a in self.attachments if a["run_id"] == run_id])
        if parts[1:] == ["download-url"]:
            return httpx.Response(
                200, json={"url": f"https://files.test/{parts[0]}?sig=abc", "expires_in": 300}
            )
        return httpx.Response(404, json={"detail": "Not found"})

    def _workflows(self, request, method, parts) -> httpx.Response:
        if not parts and method == "GET":
            return self._page(request, list(self.workflows.values()))
        if len(parts) != 1:
            return httpx.Response(404, json={"detail": "Not found"})
        workflow = self.workflows.get(parts[0])
        if workflow is None:
            return httpx.Response(404, json={"detail": "Workflow not found"})
        if method == "PATCH":
            workflow.update(json.loads(request.content))
            workflow["updated_at"] = "2025-06-01T12:00:00Z"
        return httpx.Response(200, json=workflow)

    @staticmethod
    def _page(request, items: list[dict]) -> httpx.Response:
        skip = int(request.url.params.get("skip", 0))
        limit = int(request.url.params.get("limit", 100))
        page = payloads.page(items[skip : skip + limit], total=len(items), skip=skip, limit=limit)
        return httpx.Response(200, json=page)


@contextmanager
def serve(settings):
    """Route the shared client through a fresh fake: `with serve(settings) as api`."""
    settings.CYBERDESK_BASE_URL = "https://cyberdesk.test"
    settings.CYBERDESK_API_KEY = "sk_test"
    fake = FakeCyberdesk()
    with fake.serve():
        yield fake
