"""Launcher URLs. Every page needs a login (LoginRequiredMiddleware); the only anonymous
URLs are /healthz, the webhook receiver and the sandbox API (which has its own Bearer auth)."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from launcher import webhooks
from launcher.views import batches, compare, health, launch, models, prompts, run_list, runs

urlpatterns = [
    path("", launch.launch, name="launch"),
    path("runs/", run_list.run_list, name="run_list"),
    path("runs/bulk", run_list.run_bulk_action, name="run_bulk_action"),
    path("runs/bulk/confirm", runs.run_bulk_confirm, name="run_bulk_confirm"),
    path("runs/compare/", compare.run_compare, name="run_compare"),
    path("runs/<int:run_id>/", runs.run_detail, name="run_detail"),
    path("runs/<int:run_id>/status", runs.run_status, name="run_status"),
    path("runs/<int:run_id>/attachments", runs.run_attachments_panel, name="run_attachments"),
    path("runs/<int:run_id>/cancel", runs.run_cancel_view, name="run_cancel"),
    path("runs/<int:run_id>/retry", runs.run_retry_view, name="run_retry"),
    path("runs/<int:run_id>/cancel/confirm", runs.run_cancel_confirm, name="run_cancel_confirm"),
    path("runs/<int:run_id>/retry/confirm", runs.run_retry_confirm, name="run_retry_confirm"),
    path(
        "runs/<int:run_id>/attempts/<int:number>/",
        runs.run_attempt_detail,
        name="run_attempt_detail",
    ),
    path(
        # <path>: message.block or message.block.part (launcher/evidence/timeline.py)
        "runs/<int:run_id>/attempts/<int:number>/images/<str:path>",
        runs.run_attempt_image,
        name="run_attempt_image",
    ),
    path(
        "runs/<int:run_id>/attachments/<uuid:attachment_id>/download",
        runs.run_attachment_download,
        name="run_attachment_download",
    ),
    path("batches/", batches.batch_list, name="batch_list"),
    path("batches/new", batches.batch_new, name="batch_new"),
    path(
        "batches/new/template.<str:fmt>",
        batches.batch_template,
        name="batch_template",
    ),
    path("batches/<int:batch_id>/", batches.batch_detail, name="batch_detail"),
    path("batches/<int:batch_id>/cancel", batches.batch_cancel, name="batch_cancel"),
    path("batches/<int:batch_id>/retry-failed", batches.batch_retry, name="batch_retry_failed"),
    path(
        "batches/<int:batch_id>/cancel/confirm",
        batches.batch_cancel_confirm,
        name="batch_cancel_confirm",
    ),
    path(
        "batches/<int:batch_id>/retry-failed/confirm",
        batches.batch_retry_confirm,
        name="batch_retry_failed_confirm",
    ),
    path("batches/<int:batch_id>/export.csv", batches.batch_export, name="batch_export"),
    path(
        "batches/<int:batch_id>/clusters/retry",
        batches.batch_cluster_retry_view,
        name="batch_cluster_retry",
    ),
    path("prompts/", prompts.prompt_index, name="prompt_index"),
    path("prompts/<uuid:workflow_id>/", prompts.prompt_workflow, name="prompt_workflow"),
    path(
        "prompts/<uuid:workflow_id>/move/", prompts.prompt_label_move_view, name="prompt_label_move"
    ),
    path("prompts/<uuid:workflow_id>/import/", prompts.prompt_import_view, name="prompt_import"),
    path("prompts/<uuid:workflow_id>/canary/", prompts.canary_start_view, name="canary_start"),
    path(
        "prompts/<uuid:workflow_id>/canary/<int:canary_id>/stop/",
        prompts.canary_stop_view,
        name="canary_stop",
    ),
    path("models/", models.model_list, name="model_list"),
    path("models/sync/", models.model_sync, name="model_sync"),
    path("models/<uuid:model_id>/toggle/", models.model_toggle, name="model_toggle"),
    path("models/<uuid:model_id>/prices/", models.model_prices, name="model_prices"),
    path("healthz", health.healthz, name="healthz"),
    # Svix treats a redirect as a failed delivery: the address answers with and without "/".
    path("webhooks/cyberdesk/", webhooks.cyberdesk_webhook, name="cyberdesk_webhook"),
    path("webhooks/cyberdesk", webhooks.cyberdesk_webhook),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("launcher.sandbox.urls")))
