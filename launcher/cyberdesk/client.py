"""The Cyberdesk API client: the only place Launcher speaks HTTP.

One method per endpoint, each with a `# Reference:` line naming it (see
/work/shared/spec/cyberdesk-api.md and the SDK's `cyberdesk_cloud_client/api/`). Answers become
`types.*` objects, failures become `errors.*` exceptions; status codes never leave this module.

Retries live here and only here (callers must not add their own layer):
- reads are retried on connection errors, timeouts, 408, 429 and 5xx, at most 3 attempts, with
  jittered exponential backoff (0.5 s doubling, capped at 5 s) or the server's Retry-After (up to
  60 s; a longer wait is not attempted, the caller gets `RateLimited`/`Unavailable`);
- every write carries an Idempotency-Key and is retried, with that same key, only when the
  server cannot have applied it: a connection that was never made, a 429, a 409 saying the first
  attempt is still `in_progress`, or a 503 with Retry-After. A write that may have reached the
  server without a usable answer raises `OutcomeUnknown` and is never resent blindly.
"""

from __future__ import annotations

import base64
import email.utils
import json as jsonlib
import logging
import random as _random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx

import launcher
from launcher.cyberdesk import errors, types
from launcher.parsing import ParseError, json_parse

logger = logging.getLogger("launcher.cyberdesk")

MAX_ATTEMPTS = 3
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 5.0
RETRY_AFTER_MAX_SECONDS = 60.0
PAGE_SIZE = 100
# A guard against an API whose `total` never lets the paging loop end.
MAX_PAGES = 1000

READ_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
WRITE_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
HEALTH_TIMEOUT = httpx.Timeout(2.0)
# Reads inside `quick_reads()` (a web request refreshing what it shows): one attempt, a short
# timeout. A page shows what Launcher already knows rather than wait on an API that is down.
QUICK_READ_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
_quick = threading.local()

USER_AGENT = f"Launcher/{launcher.__version__} httpx/{httpx.__version__}"

# Failures where no byte of the request reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CyberdeskClient:
    """A keep-alive HTTP client for one base URL and API key. Thread-safe (httpx.Client is).

    `transport`, `sleep` and `random` are there for tests: an `httpx.MockTransport`, a sleep
    recorder and a fixed jitter make retries observable without waiting.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        self._random = random
        self.max_attempts = max_attempts
        self._http = httpx.Client(
            # httpx joins "/v1/..." onto a base that carries a prefix such as /sandbox.
            base_url=self.base_url + "/",
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=READ_TIMEOUT,
            follow_redirects=False,
        )

    def __repr__(self) -> str:  # never show the key
        return f"<CyberdeskClient {self.base_url}>"

    def close(self) -> None:
        self._http.close()

    # --- Workflows ------------------------------------------------------------------------------

    def list_workflows(self) -> list[types.Workflow]:
        """Every workflow of the organization, all pages, newest update first."""
        # Reference: GET /v1/workflows
        return [
            types.Workflow.from_api(item)
            for item in self._all_pages(
                "/v1/workflows", {"include": "tags,post_run_checks"}, what="workflow list"
            )
        ]

    def get_workflow(self, workflow_id: UUID | str) -> types.Workflow:
        # Reference: GET /v1/workflows/{workflow_id}
        # Tags and post-run checks are asked for by name: the spec says both come by default,
        # but a default is the server's to change.
        response = self._request(
            "GET", f"/v1/workflows/{_id(workflow_id)}", params={"include": "tags,post_run_checks"}
        )
        return types.Workflow.from_api(_json(response))

    def update_workflow(
        self,
        workflow_id: UUID | str,
        *,
        name: str | None = None,
        main_prompt: str | None = None,
        model_metadata: types.ModelMetadata | dict | None = None,
        idempotency_key: str | None = None,
    ) -> types.Workflow:
        """PATCH only what is given (None = leave as is)."""
        # Reference: PATCH /v1/workflows/{workflow_id}
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if main_prompt is not None:
            body["main_prompt"] = main_prompt
        if model_metadata is not None:
            body["model_metadata"] = _model_metadata(model_metadata).to_api()
        response = self._request(
            "PATCH",
            f"/v1/workflows/{_id(workflow_id)}",
            json=body,
            idempotency_key=idempotency_key,
        )
        return types.Workflow.from_api(_json(response))

    # --- Models ---------------------------------------------------------------------------------

    def list_model_configurations(self) -> list[types.ModelConfiguration]:
        """System defaults and the organization's own (a bare array: no pagination)."""
        # Reference: GET /v1/model-configurations
        data = _json(self._request("GET", "/v1/model-configurations"))
        if not isinstance(data, list):
            raise errors.InvalidResponse("Cyberdesk sent a model list that is not a list.")
        return [types.ModelConfiguration.from_api(item) for item in data]

    # --- Runs -----------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        idempotency_key: str,
        workflow_id: UUID | str,
        main_agent_model_id: UUID | str | None = None,
        main_prompt: str | None = None,
        input_values: dict | None = None,
        sensitive_input_values: dict | None = None,
        file_inputs: Iterable[types.FileInput] | None = None,
        is_priority: bool = False,
    ) -> types.Run:
        """Start a run. The caller supplies (and stores first) the Idempotency-Key, so that a run
        whose outcome is unknown can be re-sent later without ever being created twice.
        Per-run prompt and model never modify the workflow."""
        # Reference: POST /v1/runs
        if not idempotency_key:
            raise ValueError("create_run needs an idempotency_key (store it before sending)")
        body: dict[str, Any] = {"workflow_id": _id(workflow_id), "is_priority": bool(is_priority)}
        if main_agent_model_id is not None:
            body["main_agent_model_id"] = _id(main_agent_model_id)
        if main_prompt is not None:
            body["main_prompt"] = main_prompt
        if input_values is not None:
            body["input_values"] = input_values
        if sensitive_input_values:
            body["sensitive_input_values"] = sensitive_input_values
        files = list(file_inputs or [])
        if files:
            body["file_inputs"] = [_file_input(file) for file in files]
        response = self._request("POST", "/v1/runs", json=body, idempotency_key=idempotency_key)
        return types.Run.from_api(_json(response))

    def list_runs(
        self,
        *,
        workflow_id: UUID | str | None = None,
        status: str | None = None,
        created_at_from: datetime | None = None,
        created_at_to: datetime | None = None,
        search: str | None = None,
        fields: Iterable[str] | None = None,
        sort_mode: str | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> types.RunPage:
        """One page of runs. `fields` projects (repeated `fields=` keys); the five base keys
        always come back."""
        # Reference: GET /v1/runs
        params: dict[str, Any] = {"skip": skip, "limit": limit}
        if workflow_id is not None:
            params["workflow_id"] = _id(workflow_id)
        if status is not None:
            params["status"] = status
        if created_at_from is not None:
            params["created_at_from"] = _query_datetime(created_at_from)
        if created_at_to is not None:
            params["created_at_to"] = _query_datetime(created_at_to)
        if search:
            params["search"] = search
        if fields:
            params["fields"] = list(fields)
        if sort_mode is not None:
            params["sort_mode"] = sort_mode
        response = self._request("GET", "/v1/runs", params=params)
        return types.RunPage.from_api(_json(response))

    def get_run(self, run_id: UUID | str) -> types.Run:
        # Reference: GET /v1/runs/{run_id}
        response = self._request("GET", f"/v1/runs/{_id(run_id)}")
        return types.Run.from_api(_json(response))

    def cancel_run(self, run_id: UUID | str, *, idempotency_key: str | None = None) -> types.Run:
        """The API has no cancel endpoint: cancelling is PATCHing the status (spec §3.10)."""
        # Reference: PATCH /v1/runs/{run_id}
        response = self._request(
            "PATCH",
            f"/v1/runs/{_id(run_id)}",
            json={"status": "cancelled"},
            idempotency_key=idempotency_key,
        )
        return types.Run.from_api(_json(response))

    def retry_run(self, run_id: UUID | str, *, idempotency_key: str | None = None) -> types.Run:
        """Retry a finished run in place (same id); it keeps its prompt, model and inputs."""
        # Reference: POST /v1/runs/{run_id}/retry
        response = self._request(
            "POST", f"/v1/runs/{_id(run_id)}/retry", json={}, idempotency_key=idempotency_key
        )
        return types.Run.from_api(_json(response))

    def get_run_llm_costs(self, run_id: UUID | str) -> types.LlmCosts:
        # Reference: GET /v1/runs/{run_id}/llm-costs
        response = self._request("GET", f"/v1/runs/{_id(run_id)}/llm-costs")
        return types.LlmCosts.from_api(_json(response))

    # --- Attachments ----------------------------------------------------------------------------

    def list_run_attachments(
        self, run_id: UUID | str, attachment_type: str | None = None
    ) -> list[types.Attachment]:
        """All attachments of a run (every page), optionally only `input` or `output` ones."""
        # Reference: GET /v1/run-attachments
        params: dict[str, Any] = {"run_id": _id(run_id)}
        if attachment_type is not None:
            params["attachment_type"] = attachment_type
        return [
            types.Attachment.from_api(item)
            for item in self._all_pages("/v1/run-attachments", params, what="attachment list")
        ]

    def get_attachment_download_url(self, attachment_id: UUID | str, expires_in: int = 300) -> str:
        """A short-lived signed URL that downloads the file."""
        # Reference: GET /v1/run-attachments/{attachment_id}/download-url
        response = self._request(
            "GET",
            f"/v1/run-attachments/{_id(attachment_id)}/download-url",
            params={"expires_in": expires_in},
        )
        data = _json(response)
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise errors.InvalidResponse("Cyberdesk sent a download link without its 'url'.")
        return url

    # --- Health ---------------------------------------------------------------------------------

    def check_health(self) -> None:
        """One cheap authenticated read with a short timeout and no retries (for /healthz).
        Returns None when the API answers, raises a `CyberdeskError` otherwise."""
        # Reference: GET /v1/workflows
        self._request(
            "GET", "/v1/workflows", params={"limit": 1}, timeout=HEALTH_TIMEOUT, max_attempts=1
        )

    # --- Plumbing -------------------------------------------------------------------------------

    def _all_pages(self, path: str, params: dict[str, Any], *, what: str) -> Iterator[Any]:
        skip = 0
        for _page in range(MAX_PAGES):
            data = _json(
                self._request("GET", path, params={**params, "skip": skip, "limit": PAGE_SIZE})
            )
            if not isinstance(data, dict) or not isinstance(data.get("items"), list):
                raise errors.InvalidResponse(f"Cyberdesk sent a {what} without its 'items'.")
            items = data["items"]
            yield from items
            skip += len(items)
            total = data.get("total")
            if not items or not isinstance(total, int) or skip >= total:
                return
        logger.warning("Stopped paging %s after %d pages", path, MAX_PAGES)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        timeout: httpx.Timeout | None = None,
        max_attempts: int | None = None,
    ) -> httpx.Response:
        """Send with the retry policy of the module docstring; return a 2xx response."""
        is_write = method in _WRITE_METHODS
        headers = {}
        content = None
        if json is not None:
            # Canonical bytes (keys sorted, compact): a write re-sent later with the same
            # Idempotency-Key — the reconciler's re-send of a launch, rebuilt from the stored run
            # — is byte for byte the first send, whatever order the database returned the stored
            # inputs in (PostgreSQL's jsonb reorders keys). The API refuses a reused key with
            # another body.
            content = jsonlib.dumps(
                json, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
            headers["Content-Type"] = "application/json"
        if is_write:
            # One key for every attempt of this call: the server applies it at most once.
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        attempts = max_attempts or self.max_attempts
        if not is_write and getattr(_quick, "on", False):
            attempts, timeout = 1, timeout or QUICK_READ_TIMEOUT
        timeout = timeout or (WRITE_TIMEOUT if is_write else READ_TIMEOUT)
        where = {"method": method, "path": path}
        # A write that an earlier attempt may have started (a 5xx, or 409 "in progress") is no
        # longer "not sent" when a later attempt cannot connect: its outcome is unknown.
        maybe_applied = False

        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            retry_after = None
            try:
                response = self._http.request(
                    method, path, params=params, content=content, headers=headers, timeout=timeout
                )
            except _NOT_SENT as exc:
                self._log(method, path, exc.__class__.__name__, started, attempt, attempts)
                if maybe_applied:
                    raise errors.OutcomeUnknown(
                        f"Cyberdesk could not be reached on a retry ({_describe(exc)}) after an "
                        "earlier attempt may have been applied.",
                        **where,
                    ) from exc
                failure: errors.CyberdeskError = (
                    errors.NotSent if is_write else errors.Unavailable
                )(f"Cyberdesk could not be reached ({_describe(exc)}).", **where)
            except httpx.TransportError as exc:
                self._log(method, path, exc.__class__.__name__, started, attempt, attempts)
                if is_write:
                    raise errors.OutcomeUnknown(
                        f"Cyberdesk did not answer in time ({_describe(exc)}); the change may or "
                        "may not have been applied.",
                        **where,
                    ) from exc
                failure = errors.Unavailable(
                    f"Cyberdesk did not answer ({_describe(exc)}).", **where
                )
            else:
                self._log(method, path, response.status_code, started, attempt, attempts)
                if response.is_success:
                    return response
                retry_after = _retry_after_seconds(response)
                failure = _error_from_response(response, method, path, is_write=is_write)
                maybe_applied = maybe_applied or (is_write and response.status_code != 429)
                if not _worth_retrying(response, is_write=is_write):
                    raise failure

            if attempt == attempts:
                raise failure
            if retry_after is not None and retry_after > RETRY_AFTER_MAX_SECONDS:
                raise failure  # holding a web request a minute or more is worse than failing
            self._sleep(retry_after if retry_after is not None else self._backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        """0.5 s, 1 s, 2 s … capped at 5 s, each scaled by a random 50–100 % (spreads herds)."""
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._random())

    @staticmethod
    def _log(method, path, outcome, started, attempt, attempts) -> None:
        # Path only: no query string (search text), no bodies (prompts, sensitive values).
        failed = not isinstance(outcome, int) or outcome >= 500
        logger.log(
            logging.WARNING if failed else logging.INFO,
            "cyberdesk %s %s -> %s in %d ms (attempt %d/%d)",
            method,
            path,
            outcome,
            (time.monotonic() - started) * 1000,
            attempt,
            attempts,
        )


# --- The process-wide client ------------------------------------------------------------------

_lock = threading.Lock()
_cached: tuple[tuple, CyberdeskClient] | None = None
_test_transport: tuple[httpx.BaseTransport, Callable[[float], None]] | None = None


@contextmanager
def quick_reads() -> Iterator[None]:
    """Reads made in this thread inside the block try once with `QUICK_READ_TIMEOUT` (writes
    keep their retries: they carry idempotency keys and a caller waiting on them)."""
    previous = getattr(_quick, "on", False)
    _quick.on = True
    try:
        yield
    finally:
        _quick.on = previous


def get_client(transport: httpx.BaseTransport | None = None) -> CyberdeskClient:
    """The client for the current settings, shared by the process so connections stay open.

    Settings are read at call time: when a test overrides CYBERDESK_BASE_URL or
    CYBERDESK_API_KEY the next call builds a matching client. With `transport`, a fresh
    (uncached) client using it is returned.
    """
    global _cached
    from django.conf import settings

    base_url = settings.CYBERDESK_BASE_URL
    api_key = settings.CYBERDESK_API_KEY
    if transport is not None:
        return CyberdeskClient(base_url=base_url, api_key=api_key, transport=transport)
    with _lock:
        key = (base_url, api_key, _test_transport)
        if _cached is None or _cached[0] != key:
            if _test_transport is not None:
                client = CyberdeskClient(
                    base_url=base_url,
                    api_key=api_key,
                    transport=_test_transport[0],
                    sleep=_test_transport[1],
                )
            else:
                client = CyberdeskClient(base_url=base_url, api_key=api_key)
            # The previous client is left to the garbage collector: another thread may still
            # be in the middle of a call on it.
            _cached = (key, client)
        return _cached[1]


def close_client() -> None:
    """Close the shared client's connections and forget it (the next `get_client()` builds a
    new one). For process shutdown and for tests against `live_server`: a kept-alive connection
    keeps a server thread, and its database connection, alive past the test."""
    global _cached
    with _lock:
        cached, _cached = _cached, None
    if cached is not None:
        cached[1].close()


@contextmanager
def use_transport(
    transport: httpx.BaseTransport, *, sleep: Callable[[float], None] = lambda seconds: None
) -> Iterator[None]:
    """For tests of code that calls `get_client()`: inside the block, the shared client sends
    through `transport` (e.g. `httpx.MockTransport(handler)`) and retries do not really sleep."""
    global _test_transport
    with _lock:
        previous, _test_transport = _test_transport, (transport, sleep)
    try:
        yield
    finally:
        with _lock:
            _test_transport = previous


# --- Helpers -----------------------------------------------------------------------------------


def _id(value: UUID | str) -> str:
    """Ids go into paths: a UUID rejects anything that could change the path (/, ?, ..)."""
    try:
        return str(UUID(str(value)))
    except ValueError:
        raise errors.NotFound(f"'{value}' is not a valid Cyberdesk id.") from None


def _model_metadata(value: types.ModelMetadata | dict) -> types.ModelMetadata:
    if isinstance(value, types.ModelMetadata):
        return value
    unknown = set(value) - set(types.ModelMetadata.ROLES)
    if unknown:
        raise ValueError(f"unknown model roles: {', '.join(sorted(unknown))}")
    return types.ModelMetadata(**{role: UUID(str(v)) if v else None for role, v in value.items()})


def _file_input(file: types.FileInput) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "filename": file.filename,
        "content": base64.b64encode(file.content).decode("ascii"),
    }
    if file.target_path:
        encoded["target_path"] = file.target_path
    return encoded


def _query_datetime(value: datetime) -> str:
    """ISO 8601 in UTC; naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _json(response: httpx.Response) -> Any:
    # The shared parser: an answer nested too deeply or holding a huge number is an
    # InvalidResponse, never a RecursionError deep in a page.
    try:
        return json_parse(response.content, replace_surrogates=True)
    except ParseError:
        raise errors.InvalidResponse(
            f"Cyberdesk answered {response.request.method} {response.request.url.path} "
            "with something that is not JSON.",
            status_code=response.status_code,
        ) from None


def _describe(exc: Exception) -> str:
    return exc.__class__.__name__ + (f": {exc}" if str(exc) else "")


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds, from either of its forms (delta-seconds or an HTTP date)."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _idempotency_in_progress(response: httpx.Response) -> bool:
    return (
        response.status_code == 409
        and response.headers.get("Idempotency-Status", "").lower() == "in_progress"
    )


def _worth_retrying(response: httpx.Response, *, is_write: bool) -> bool:
    status = response.status_code
    if not is_write:
        return status in (408, 429) or status >= 500
    # A write is resent (with its same key) only when the server cannot have applied it.
    return (
        status == 429
        or _idempotency_in_progress(response)
        or (status == 503 and response.headers.get("Retry-After") is not None)
    )


def _detail(response: httpx.Response) -> Any:
    try:
        body = json_parse(response.content, replace_surrogates=True)
    except ParseError:
        text = response.text.strip()
        return text[:200] if text else None
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def _detail_text(detail: Any) -> str:
    if detail is None or detail == "":
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        for key in ("message", "msg", "detail", "error"):
            if isinstance(detail.get(key), str):
                return detail[key]
    return str(detail)[:200]


def _validation_errors(detail: Any) -> tuple[dict[str, list[str]], list[str]]:
    """`detail` as a string, an object, or FastAPI's list of {loc, msg, type}: field messages
    keyed by dotted path without `body.`, and the messages that name no field. The `input`
    FastAPI echoes back is dropped: it may be a sensitive value."""
    field_errors: dict[str, list[str]] = {}
    messages: list[str] = []
    items = detail if isinstance(detail, list) else [detail]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("loc"), list):
            loc = [str(part) for part in item["loc"]]
            if loc and loc[0] == "body":
                loc = loc[1:]
            message = str(item.get("msg") or "is not valid")
            if loc:
                field_errors.setdefault(".".join(loc), []).append(message)
            else:
                messages.append(message)
        elif (text := _detail_text(item)) != "":
            messages.append(text)
    return field_errors, messages


def _error_from_response(
    response: httpx.Response, method: str, path: str, *, is_write: bool
) -> errors.CyberdeskError:
    status = response.status_code
    where = {"status_code": status, "method": method, "path": path}
    detail = _detail(response)
    said = _detail_text(detail) if not isinstance(detail, list) else ""
    suffix = f": {said}" if said else "."

    if status in (400, 422):
        field_errors, messages = _validation_errors(detail)
        parts = [f"{path}: {'; '.join(msgs)}" for path, msgs in field_errors.items()] + messages
        summary = "; ".join(parts) if parts else "no reason given"
        return errors.InvalidRequest(
            f"Cyberdesk rejected the request: {summary}",
            field_errors=field_errors,
            messages=messages,
            **where,
        )
    if status in (401, 403):
        return errors.AuthError(
            f"Cyberdesk refused the API key (HTTP {status}){suffix} Check CYBERDESK_API_KEY.",
            **where,
        )
    if status == 404:
        return errors.NotFound(f"Cyberdesk has no such item{suffix}", **where)
    if status == 409 and _idempotency_in_progress(response):
        return errors.OutcomeUnknown(
            "Cyberdesk is still processing an earlier attempt of this request.", **where
        )
    if status == 409:
        return errors.Conflict(f"Cyberdesk refused because of a conflict{suffix}", **where)
    if status == 429:
        retry_after = _retry_after_seconds(response)
        wait = f" Try again in {retry_after:.0f} s." if retry_after is not None else ""
        return errors.RateLimited(
            f"Cyberdesk is rate limiting us (HTTP 429).{wait}", retry_after=retry_after, **where
        )
    if status >= 500 or status == 408:
        if is_write:
            return errors.OutcomeUnknown(
                f"Cyberdesk failed (HTTP {status}); the change may or may not have been applied.",
                **where,
            )
        return errors.Unavailable(f"Cyberdesk is unavailable (HTTP {status}).", **where)
    return errors.CyberdeskError(f"Cyberdesk answered HTTP {status}{suffix}", **where)
