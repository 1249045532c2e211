"""The sandbox API endpoints (spec §3): parse and type-check the request, call a service or a
selector, answer with the real API's JSON. Each view names the endpoint it implements."""

import uuid

from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt

from launcher.sandbox import lifecycle, selectors, services
from launcher.sandbox.api import api_endpoint
from launcher.sandbox.errors import ApiError, Problems, not_found
from launcher.sandbox.inputs import input_schema_parse
from launcher.sandbox.models import (
    AttachmentType,
    ModelConfiguration,
    RunAttachment,
    RunStatus,
    Workflow,
)
from launcher.sandbox.params import (
    ABSENT,
    BodyFields,
    QueryFields,
    json_body,
    path_uuid,
)
from launcher.sandbox.payloads import (
    RUN_PROJECTABLE_FIELDS,
    attachment_json,
    model_configuration_json,
    page_json,
    run_json,
    workflow_json,
)

MAX_LIMIT = 1000
# Far beyond any real offset, but small enough for every database's integer type.
MAX_SKIP = 2**31 - 1
POST_RUN_CHECK_TYPES = (
    "output_data_agentic_check",
    "output_data_passes_schema_validation",
    "run_attachment_exists",
    "run_attachment_image_check",
)


def _page_params(query: QueryFields) -> tuple[int, int]:
    return (
        query.integer("skip", default=0, ge=0, le=MAX_SKIP),
        query.integer("limit", default=100, ge=1, le=MAX_LIMIT),
    )


# --- Workflows ------------------------------------------------------------------------------------


@api_endpoint("GET")
def workflow_list(request: HttpRequest) -> HttpResponse:
    # Reference: GET /v1/workflows
    problems = Problems()
    query = QueryFields(request.GET, problems)
    filters = {
        "search": query.string("search"),
        "created_at_from": query.datetime("created_at_from"),
        "created_at_to": query.datetime("created_at_to"),
        "updated_at_from": query.datetime("updated_at_from"),
        "updated_at_to": query.datetime("updated_at_to"),
        "tag_ids": _tag_ids(query, problems),
    }
    include = query.comma_list("include", ("tags", "post_run_checks"))
    include_tags = query.boolean("include_tags")
    skip, limit = _page_params(query)
    problems.raise_if_any()
    if include is None:  # the legacy flag only counts when `include` is absent
        include = ["tags"] if include_tags else []

    workflows = selectors.workflows_filtered(**filters).prefetch_related("tags")
    page = list(workflows[skip : skip + limit])
    tags, checks = "tags" in include, "post_run_checks" in include
    return JsonResponse(
        page_json(
            [workflow_json(w, include_tags=tags, include_checks=checks) for w in page],
            total=workflows.count(),
            skip=skip,
            limit=limit,
            included=selectors.workflow_included(page, tags=tags, checks=checks),
        )
    )


def _tag_ids(query: QueryFields, problems: Problems):
    raw = query.string("tag_ids")
    if not raw:
        return None
    ids = []
    for part in raw.split(","):
        try:
            ids.append(uuid.UUID(part.strip()))
        except ValueError:
            problems.add(
                ("query", "tag_ids"),
                "Value error, tag_ids must be comma-separated UUIDs",
                "value_error",
                raw,
            )
            return None
    return ids


@api_endpoint("GET", "PATCH")
def workflow_detail(request: HttpRequest, workflow_id: str) -> HttpResponse:
    # Reference: GET /v1/workflows/{workflow_id}, PATCH /v1/workflows/{workflow_id}
    pk = path_uuid("workflow_id", workflow_id)
    if request.method == "PATCH":
        workflow = services.workflow_update(pk, _workflow_changes(request))
        return JsonResponse(workflow_json(workflow, include_tags=True, include_checks=True))

    problems = Problems()
    include = QueryFields(request.GET, problems).comma_list("include", ("tags", "post_run_checks"))
    problems.raise_if_any()
    include = ["tags", "post_run_checks"] if include is None else include
    workflow = Workflow.objects.prefetch_related("tags").filter(pk=pk).first()
    if workflow is None:
        raise not_found("Workflow")
    tags, checks = "tags" in include, "post_run_checks" in include
    data = workflow_json(workflow, include_tags=tags, include_checks=checks)
    data["included"] = selectors.workflow_included([workflow], tags=tags, checks=checks)
    return JsonResponse(data)


def _workflow_changes(request: HttpRequest) -> dict:
    problems = Problems()
    body = BodyFields(json_body(request), problems)
    changes = {
        "name": body.string("name", max_length=255),
        "main_prompt": body.string("main_prompt", nullable=False, min_length=1),
        "input_schema": _schema_string(body, "input_schema"),
        "output_schema": _schema_string(body, "output_schema"),
        "includes_file_exports": body.boolean("includes_file_exports", nullable=False),
        "is_webhooks_enabled": body.boolean("is_webhooks_enabled", nullable=False),
        "terminal_command_allowlist": body.string_list("terminal_command_allowlist"),
        "model_metadata": body.model_metadata("model_metadata"),
        "post_run_check_failure_cleanup_prompt": body.string(
            "post_run_check_failure_cleanup_prompt"
        ),
        "workflow_metadata": _workflow_metadata(body, problems),
        "post_run_checks": _post_run_check_upserts(body, problems),
    }
    problems.raise_if_any()
    return {key: value for key, value in changes.items() if value is not ABSENT}


def _schema_string(body: BodyFields, key: str):
    """A JSON Schema sent as a string (as the API returns it); "" or null clears it."""
    value = body.string(key)
    if value is ABSENT or value is None:
        return value
    if not value.strip():
        return None
    if input_schema_parse(value) is None:
        body.problems.add(
            ("body", key),
            f"Value error, {key} must be a JSON Schema object serialized as a string",
            "value_error",
            value,
        )
        return ABSENT
    return value


def _workflow_metadata(body: BodyFields, problems: Problems):
    value = body.object("workflow_metadata")
    if not value:
        return value
    fields = BodyFields(value, problems, ("body", "workflow_metadata"))
    result = {
        "has_unaddressed_error": fields.boolean("has_unaddressed_error"),
        "last_errored_run_start": fields.datetime("last_errored_run_start"),
        "last_errored_run_uuid": fields.uuid("last_errored_run_uuid"),
    }
    return {key: item for key, item in result.items() if item is not ABSENT}


def _post_run_check_upserts(body: BodyFields, problems: Problems):
    value = body.list("post_run_checks")
    if not value:
        return value
    upserts = []
    for index, item in enumerate(value):
        loc = ("body", "post_run_checks", index)
        if not isinstance(item, dict):
            problems.add(loc, "Input should be a valid dictionary", "dict_type", item)
            continue
        fields = BodyFields(item, problems, loc)
        fields.uuid("id")
        fields.string("name", required=True, nullable=False, min_length=1)
        fields.enum("type", POST_RUN_CHECK_TYPES, nullable=False)
        if "type" not in item:
            problems.add((*loc, "type"), "Field required", "missing")
        upserts.append(item)
    return upserts


@api_endpoint("GET")
def workflow_versions(request: HttpRequest, workflow_id: str) -> HttpResponse:
    # Reference: GET /v1/workflows/{workflow_id}/versions (a bare array)
    workflow = Workflow.objects.filter(pk=path_uuid("workflow_id", workflow_id)).first()
    if workflow is None:
        raise not_found("Workflow")
    return JsonResponse(list(reversed(workflow.old_versions or [])), safe=False)


# --- Model configurations -------------------------------------------------------------------------


@api_endpoint("GET")
def model_configuration_list(request: HttpRequest) -> HttpResponse:
    # Reference: GET /v1/model-configurations (a bare array, no pagination)
    configs = ModelConfiguration.objects.order_by("-is_system_default", "provider", "name")
    return JsonResponse([model_configuration_json(c) for c in configs], safe=False)


@api_endpoint("GET")
def model_configuration_detail(request: HttpRequest, model_configuration_id: str) -> HttpResponse:
    # Reference: GET /v1/model-configurations/{model_configuration_id}
    pk = path_uuid("model_configuration_id", model_configuration_id)
    config = ModelConfiguration.objects.filter(pk=pk).first()
    if config is None:
        raise not_found("Model configuration")
    return JsonResponse(model_configuration_json(config))


# --- Runs -----------------------------------------------------------------------------------------

RUN_INCLUDES = ("workflow", "machine", "machine.pools")


@api_endpoint("GET", "POST")
def run_collection(request: HttpRequest) -> HttpResponse:
    # Reference: GET /v1/runs, POST /v1/runs
    if request.method == "POST":
        run = services.run_create(**_run_create_params(request))
        return JsonResponse(run_json(run), status=201)

    problems = Problems()
    query = QueryFields(request.GET, problems)
    filters = {
        "workflow_id": query.uuid("workflow_id"),
        "machine_id": query.uuid("machine_id"),
        "session_id": query.uuid("session_id"),
        "status": query.enum("status", RunStatus.values),
        "created_at_from": query.datetime("created_at_from"),
        "created_at_to": query.datetime("created_at_to"),
        "search": query.string("search"),
        "deep_search": query.boolean("deep_search"),
        "sort_mode": query.enum("sort_mode", ("activity", "created_at_desc")),
    }
    fields = query.enum_list("fields", RUN_PROJECTABLE_FIELDS)
    include = query.comma_list("include", RUN_INCLUDES)
    skip, limit = _page_params(query)
    problems.raise_if_any()

    lifecycle.runs_advance_due()
    runs = selectors.runs_filtered(**filters)
    page = list(runs.select_related("workflow")[skip : skip + limit])
    return JsonResponse(
        page_json(
            [run_json(run, fields=fields) for run in page],
            total=runs.count(),
            skip=skip,
            limit=limit,
            included=selectors.run_included(page, include),
        )
    )


def _run_input_params(body: BodyFields) -> dict:
    """The fields run create, bulk create and retry share."""
    return {
        "input_values": body.object("input_values"),
        "sensitive_input_values": body.object("sensitive_input_values"),
        "file_inputs": body.file_inputs("file_inputs"),
        "is_priority": body.boolean("is_priority"),
        "machine_id": body.uuid("machine_id"),
        "pool_ids": body.uuid_list("pool_ids"),
        "session_id": body.uuid("session_id"),
        "start_session": body.boolean("start_session"),
    }


def _present(params: dict) -> dict:
    return {key: value for key, value in params.items() if value is not ABSENT}


def _run_create_params(request: HttpRequest) -> dict:
    problems = Problems()
    body = BodyFields(json_body(request), problems)
    params = {
        "workflow_id": body.uuid("workflow_id", required=True, nullable=False),
        # An empty override would run an empty prompt: refused like a missing one.
        "main_prompt": body.string("main_prompt", min_length=1),
        "main_agent_model_id": body.uuid("main_agent_model_id"),
        "model_metadata": body.model_metadata("model_metadata"),
        "session_alias": body.string("session_alias"),
        "release_session_after": body.boolean("release_session_after"),
        **_run_input_params(body),
    }
    problems.raise_if_any()
    params = _present(params)
    for flag in ("is_priority", "start_session"):
        params[flag] = bool(params.get(flag))
    return params


@api_endpoint("POST")
def run_bulk_create(request: HttpRequest) -> HttpResponse:
    # Reference: POST /v1/runs/bulk (no prompt or model overrides: they are ignored)
    problems = Problems()
    body = BodyFields(json_body(request), problems)
    params = {
        "workflow_id": body.uuid("workflow_id", required=True, nullable=False),
        "count": body.integer("count", required=True, gt=0, le=MAX_LIMIT),
        **_run_input_params(body),
    }
    problems.raise_if_any()
    params = _present(params)
    for flag in ("is_priority", "start_session"):
        params[flag] = bool(params.get(flag))
    runs = services.runs_bulk_create(**params)
    return JsonResponse(
        {"created_runs": [run_json(run) for run in runs], "failed_count": 0, "errors": []},
        status=201,
    )


@api_endpoint("GET", "PATCH", "DELETE")
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    # Reference: GET, PATCH and DELETE /v1/runs/{run_id}
    pk = path_uuid("run_id", run_id)
    if request.method == "PATCH":
        return JsonResponse(run_json(services.run_update(pk, _run_changes(request))))
    if request.method == "DELETE":
        services.run_delete(pk)
        return HttpResponse(status=204)

    problems = Problems()
    include = QueryFields(request.GET, problems).comma_list("include", RUN_INCLUDES)
    problems.raise_if_any()
    run = lifecycle.run_refresh(pk)
    if run is None:
        raise not_found("Run")
    data = run_json(run)
    data["included"] = selectors.run_included([run], include)
    return JsonResponse(data)


def _run_changes(request: HttpRequest) -> dict:
    problems = Problems()
    body = BodyFields(json_body(request), problems)
    changes = {
        "status": body.enum("status", RunStatus.values, nullable=False),
        "error": body.string_list("error"),
        "output_data": body.object("output_data"),
        "output_attachment_ids": body.string_list("output_attachment_ids"),
        "run_message_history": body.list("run_message_history"),
        "input_values": body.object("input_values"),
        "usage_metadata": body.object("usage_metadata"),
        "post_run_checks": _check_snapshot_updates(body, problems),
        "started_at": body.datetime("started_at"),
        "ended_at": body.datetime("ended_at"),
        "release_session_after": body.boolean("release_session_after"),
    }
    problems.raise_if_any()
    return _present(changes)


POST_RUN_CHECK_STATUSES = ("pending", "running", "success", "failed", "infra_error", "cancelled")


def _check_snapshot_updates(body: BodyFields, problems: Problems):
    """Post-run check snapshots written by a worker: objects with a valid `status`."""
    value = body.list("post_run_checks")
    if not value:
        return value
    for index, item in enumerate(value):
        loc = ("body", "post_run_checks", index)
        if not isinstance(item, dict):
            problems.add(loc, "Input should be a valid dictionary", "dict_type", item)
            continue
        if "status" not in item:
            problems.add((*loc, "status"), "Field required", "missing")
        else:
            BodyFields(item, problems, loc).enum("status", POST_RUN_CHECK_STATUSES, nullable=False)
    return value


@api_endpoint("POST")
def run_retry(request: HttpRequest, run_id: str) -> HttpResponse:
    # Reference: POST /v1/runs/{run_id}/retry (in place: same id)
    pk = path_uuid("run_id", run_id)
    problems = Problems()
    body = BodyFields(json_body(request, required=False), problems)
    changes = {
        **_run_input_params(body),
        "reuse_session": body.boolean("reuse_session"),
        "session_alias": body.string("session_alias"),
        "release_session_after": body.boolean("release_session_after"),
    }
    problems.raise_if_any()
    return JsonResponse(run_json(services.run_retry(pk, **_present(changes))))


@api_endpoint("GET")
def run_llm_costs(request: HttpRequest, run_id: str) -> HttpResponse:
    # Reference: GET /v1/runs/{run_id}/llm-costs
    run = lifecycle.run_refresh(path_uuid("run_id", run_id))
    if run is None:
        raise not_found("Run")
    return JsonResponse(lifecycle.llm_costs(run))


# --- Run attachments ------------------------------------------------------------------------------


@api_endpoint("GET")
def attachment_list(request: HttpRequest) -> HttpResponse:
    # Reference: GET /v1/run-attachments
    problems = Problems()
    query = QueryFields(request.GET, problems)
    run_id = query.uuid("run_id")
    attachment_type = query.enum("attachment_type", AttachmentType.values)
    skip, limit = _page_params(query)
    problems.raise_if_any()
    if run_id:
        lifecycle.run_refresh(run_id)
    attachments = selectors.attachments_filtered(run_id=run_id, attachment_type=attachment_type)
    page = attachments[skip : skip + limit]
    return JsonResponse(
        page_json(
            [attachment_json(a) for a in page], total=attachments.count(), skip=skip, limit=limit
        )
    )


def _attachment(attachment_id: str, *, with_content: bool = False) -> RunAttachment:
    pk = path_uuid("attachment_id", attachment_id)
    attachments = (
        RunAttachment.objects.all() if with_content else RunAttachment.objects.defer("content")
    )
    attachment = attachments.filter(pk=pk).first()
    if attachment is None:
        raise not_found("Run attachment")
    return attachment


@api_endpoint("GET")
def attachment_detail(request: HttpRequest, attachment_id: str) -> HttpResponse:
    # Reference: GET /v1/run-attachments/{attachment_id}
    return JsonResponse(attachment_json(_attachment(attachment_id)))


_SIGNING_SALT = "launcher.sandbox.attachment-download"


@api_endpoint("GET")
def attachment_download_url(request: HttpRequest, attachment_id: str) -> HttpResponse:
    # Reference: GET /v1/run-attachments/{attachment_id}/download-url
    problems = Problems()
    expires_in = QueryFields(request.GET, problems).integer(
        "expires_in", default=300, ge=10, le=3600
    )
    problems.raise_if_any()
    attachment = _attachment(attachment_id)
    token = signing.TimestampSigner(salt=_SIGNING_SALT).sign_object(
        {"id": str(attachment.id), "ttl": expires_in}
    )
    url = request.build_absolute_uri(reverse("sandbox:attachment_file", args=[token]))
    return JsonResponse({"url": url, "expires_in": expires_in})


@api_endpoint("GET")
def attachment_download(request: HttpRequest, attachment_id: str) -> HttpResponse:
    # Reference: GET /v1/run-attachments/{attachment_id}/download
    return _file_response(_attachment(attachment_id, with_content=True))


@login_not_required
def attachment_file(request: HttpRequest, token: str) -> HttpResponse:
    """The signed URL handed out by download-url: no Bearer key, the signature is the key."""
    signer = signing.TimestampSigner(salt=_SIGNING_SALT)
    try:
        ttl = int(signer.unsign_object(token)["ttl"])
        attachment_id = signer.unsign_object(token, max_age=ttl)["id"]
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return JsonResponse({"detail": "This download link is invalid or has expired"}, status=403)
    try:
        return _file_response(_attachment(attachment_id, with_content=True))
    except ApiError as exc:
        return exc.response()


def _file_response(attachment: RunAttachment) -> HttpResponse:
    response = HttpResponse(bytes(attachment.content), content_type=attachment.content_type)
    # Quoted/encoded by Django: a file name is caller-supplied text.
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=attachment.filename
    )
    return response


@api_endpoint("GET", "POST", "PUT", "PATCH", "DELETE")
def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    raise ApiError(404, "Not Found")


# --- Routes the sandbox does not implement --------------------------------------------------------
# POST /v1/runs/chain (workflow chains) and POST /v1/run-attachments (uploads) exist upstream
# (SDK 2.2.69) but not here. They answer as a route the server lacks does upstream (FastAPI:
# 404 {"detail": "Not Found"}), not 405, which would claim the path serves other methods. Every
# other method keeps its route: GET /v1/runs/chain is /v1/runs/{run_id} with an id that is not
# a UUID (422), as upstream.


@csrf_exempt
@login_not_required
def run_detail_or_chain(request: HttpRequest, run_id: str) -> HttpResponse:
    if run_id == "chain" and request.method == "POST":
        return unknown_endpoint(request, rest="runs/chain")
    return run_detail(request, run_id=run_id)


@csrf_exempt
@login_not_required
def attachment_collection(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return unknown_endpoint(request, rest="run-attachments")
    return attachment_list(request)
