"""A small fake of the API's workflow and model-configuration endpoints, served through
`httpx.MockTransport` (the client under test is the real one)."""

import json
import re
from contextlib import contextmanager

import httpx

from launcher.cyberdesk import use_transport
from tests.cyberdesk import payloads


class FakeCatalogApi:
    def __init__(self):
        self.models: list[dict] = []
        self.workflows: dict[str, dict] = {}
        self.requests: list[httpx.Request] = []
        self.fail_with: int | None = None

    def add_model(self, **fields) -> dict:
        model = payloads.model_configuration(**fields)
        self.models.append(model)
        return model

    def add_workflow(self, **fields) -> dict:
        workflow = payloads.workflow(**fields)
        self.workflows[workflow["id"]] = workflow
        return workflow

    def patches(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.method == "PATCH"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with:
            return httpx.Response(self.fail_with, json={"detail": "down for maintenance"})
        path = request.url.path.removeprefix("/sandbox")
        if request.method == "GET" and path == "/v1/model-configurations":
            return httpx.Response(200, json=self.models)
        if request.method == "GET" and path == "/v1/workflows":
            skip = int(request.url.params.get("skip", 0))
            limit = int(request.url.params.get("limit", 100))
            items = list(self.workflows.values())
            return httpx.Response(
                200,
                json=payloads.page(
                    items[skip : skip + limit], total=len(items), skip=skip, limit=limit
                ),
            )
        match = re.fullmatch(r"/v1/workflows/([0-9a-f-]+)", path)
        if match:
            workflow = self.workflows.get(match.group(1))
            if workflow is None:
                return httpx.Response(404, json={"detail": "Workflow not found"})
            if request.method == "PATCH":
                workflow.update(json.loads(request.content))
                workflow["updated_at"] = "2025-06-01T12:00:00Z"
            return httpx.Response(200, json=workflow)
        return httpx.Response(404, json={"detail": f"not faked: {request.method} {path}"})

    @contextmanager
    def serving(self):
        with use_transport(httpx.MockTransport(self)):
            yield self
