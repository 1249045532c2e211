"""The launch page (`/`): pick a workflow, a model, a prompt version, fill the inputs, launch.

One URL does it all, so the page works as a plain form without JavaScript:

- `GET /` shows the form for the first workflow, `?workflow=<id>` for another one,
  `?again=<run id>[&prompt_from=same|production]` prefilled from an earlier run.
- `POST /` with `refresh` re-renders the form for the chosen workflow and prompt, keeping what
  was typed (secrets and files excepted). htmx sends it when Workflow or Prompt change and
  swaps in only `#launch-details`; without JavaScript the "Choose" button sends it. It is a
  POST, not a GET, so that nothing typed ever lands in a URL.
- `POST /` otherwise launches: a run page redirect on success (`HX-Redirect` for htmx), the
  form again with every error next to its field (status 200) on failure.

Permission: `launcher.launch_run` for all of it (403 otherwise).
"""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from launcher.cyberdesk import types
from launcher.forms import LaunchForm
from launcher.models import Run, Workflow
from launcher.parsing import id_parse
from launcher.permissions import LAUNCH_RUN, permission_required
from launcher.selectors import workflow_error_runs
from launcher.services.runs import (
    PRODUCTION,
    SAME,
    LaunchFailed,
    launch_catalog_refresh,
    run_launch,
    run_launch_again,
)
from launcher.services.workflows import workflow_choose

PAGE = "launcher/launch.html"


# Sensitive inputs arrive in this POST: keep every field out of error reports.
@sensitive_post_parameters()
@require_http_methods(["GET", "POST"])
@permission_required(LAUNCH_RUN)
def launch(request):
    api_error = launch_catalog_refresh()
    workflows = list(Workflow.objects.all())
    params = request.POST if request.method == "POST" else request.GET

    again = None
    again_id = _run_id(request.GET.get("again")) if request.method == "GET" else None
    if again_id is not None:
        run = get_object_or_404(
            Run.objects.select_related("workflow", "model_option", "prompt_version"), pk=again_id
        )
        prompt_from = PRODUCTION if request.GET.get("prompt_from") == PRODUCTION else SAME
        again = run_launch_again(run, prompt_from=prompt_from)

    workflow_id = again.initial["workflow"] if again else params.get("workflow")
    workflow, workflow_error = workflow_choose(workflow_id, workflows)
    if workflow is not None and workflow not in workflows:
        workflows.append(workflow)

    # "Unaddressed error since …" links to that run when Launcher launched it.
    error_runs = workflow_error_runs(workflows)
    for item in [*workflows, workflow]:
        if item is not None:
            item.error_run_pk = error_runs.get(item.pk)
    context = {
        "nav": "launch",
        "workflows": workflows,
        "workflow": workflow,
        "api_error": api_error or workflow_error,
        "again": again,
    }

    if request.method == "POST" and "refresh" not in request.POST:
        return _launch_submit(request, context)

    form = LaunchForm(
        workflows=workflows,
        workflow=workflow,
        initial=again.initial if again else None,
        echo=None if again else params,
    )
    if again:
        form.prefill_inputs(again.input_values)
    context["form"] = form
    if request.htmx and request.method == "POST":
        return render(request, f"{PAGE}#launch-details", context)
    return render(request, PAGE, context)


def _launch_submit(request, context):
    form = LaunchForm(
        request.POST, request.FILES, workflows=context["workflows"], workflow=context["workflow"]
    )
    context["form"] = form
    used = _run_for_token(request.POST.get("token"))
    if used is not None:
        # The same form again (a double click, a reload, the back button): same run, no call.
        return _to_run_page(request, used)

    if form.is_valid():
        payload = form.payload
        try:
            run = run_launch(
                user=request.user,
                workflow=form.cleaned_data["workflow"],
                model_option=form.cleaned_data["model"],
                prompt_choice=form.cleaned_data["prompt"].choice,
                input_values=payload.input_values,
                sensitive_input_values=payload.sensitive_input_values,
                file_inputs=[
                    types.FileInput(filename=file.filename, content=file.content)
                    for file in payload.files
                ],
                file_input_fields={file.key: file.filename for file in payload.files},
                idempotency_key=form.cleaned_data["token"],
            )
        except LaunchFailed as failure:
            if failure.api_error is not None:
                form.add_api_errors(failure.api_error)
            context["launch_error"] = failure.message
            context["launch_error_safe_to_retry"] = failure.safe_to_retry
            if failure.field in form.fields:
                form.add_error(failure.field, failure.message)
            if failure.run is not None:
                # That token now names a rejected run: the corrected form is a new launch.
                form.renew_token()
        else:
            return _to_run_page(request, run)

    template = f"{PAGE}#launch-form" if request.htmx else PAGE
    return render(request, template, context)


def _run_id(value: str | None) -> int | None:
    """A run id from the query string, or None for anything that cannot be one."""
    return id_parse(value)


def _run_for_token(token: str | None) -> Run | None:
    try:
        key = uuid.UUID(str(token))
    except ValueError:
        return None
    return Run.objects.filter(idempotency_key=key).first()


def _to_run_page(request, run: Run):
    url = reverse("run_detail", args=[run.pk])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)
