"""A tiny in-memory Cyberdesk for service tests: answers run reads, lists, costs and creates
through `httpx.MockTransport`, and counts every request (thread-safe)."""

import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx

from launcher.cyberdesk import use_transport

BASE_KEYS = ("id", "workflow_id", "machine_id", "status", "created_at")


def upstream_run(run_id=None, *, workflow_id=None, status="running", **fields) -> dict:
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
        "run_message_history": [],
        **fields,
    }


class FakeCyberdesk:
    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.costs: dict[str, float | None] = {}
        self.created_by_key: dict[str, dict] = {}
        self.requests: list[httpx.Request] = []
        self.calls = Counter()
        self.fail_with: int | None = None  # answer every request with this status
        # Tests' hook: called with each request; may raise, or return a response to answer with.
        self.on_request = None
        self.lose_create_answers = 0  # create the run, then time out this many answers
        self.lock = threading.Lock()

    def add(self, run: dict) -> dict:
        self.runs[run["id"]] = run
        return run

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            self.calls[self._route_name(request)] += 1
        if self.on_request and (answer := self.on_request(request)) is not None:
            return answer
        if self.fail_with:
            return httpx.Response(self.fail_with, json={"detail": "boom"})
        path = request.url.path.removeprefix("/sandbox")
        parts = path.strip("/").split("/")
        if request.method == "GET" and path == "/v1/runs":
            return self._list(request)
        if request.method == "POST" and path == "/v1/runs":
            return self._create(request)
        if request.method == "GET" and len(parts) == 3 and parts[1] == "runs":
            run = self.runs.get(parts[2])
            if run is None:
                return httpx.Response(404, json={"detail": "Run not found"})
            return httpx.Response(200, json=run)
        if request.method == "GET" and len(parts) == 4 and parts[3] == "llm-costs":
            return httpx.Response(
                200,
                json={
                    "run_id": parts[2],
                    "has_unpriced": False,
                    "rows": [],
                    "total_cost_usd": self.costs.get(parts[2]),
                },
            )
        return httpx.Response(404, json={"detail": "Not found"})

    @staticmethod
    def _route_name(request) -> str:
        path = request.url.path.removeprefix("/sandbox")
        if path == "/v1/runs":
            return f"{request.method} /v1/runs"
        if path.endswith("/llm-costs"):
            return "GET llm-costs"
        return f"{request.method} /v1/runs/{{id}}"

    def _list(self, request):
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
        fields = params.get_list("fields")
        if fields:
            items = [{k: v for k, v in r.items() if k in BASE_KEYS or k in fields} for r in items]
        skip, limit = int(params.get("skip", 0)), int(params.get("limit", 100))
        return httpx.Response(
            200,
            json={
                "items": items[skip : skip + limit],
                "total": len(items),
                "skip": skip,
                "limit": limit,
            },
        )

    def _create(self, request):
        key = request.headers.get("Idempotency-Key")
        if key in self.created_by_key:  # the API replays the original answer
            return httpx.Response(201, json=self.created_by_key[key])
        body = json.loads(request.content)
        run = self.add(
            upstream_run(
                workflow_id=body["workflow_id"],
                status="scheduling",
                created_at=datetime.now(tz=UTC),
                input_values=body.get("input_values") or {},
                main_prompt=body.get("main_prompt"),
            )
        )
        if key:
            self.created_by_key[key] = run
        if self.lose_create_answers:
            self.lose_create_answers -= 1
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(201, json=run)

    def serve(self):
        """Route the shared client through this fake for the duration of a `with` block."""
        return use_transport(httpx.MockTransport(self))
